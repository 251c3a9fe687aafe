/**
 * AWS's responses to ImportSnapshot and DescribeImportSnapshotTasks in EC2's query/XML wire
 * format (API version 2016-11-15), as the stand-in serves them. The shapes and values follow
 * AWS's published examples of these calls (the EC2 API and CLI references: a task in progress
 * reports `active`, a Progress percentage and a StatusMessage such as `pending` or
 * `downloading/converting`; a completed one its SnapshotId; a failed one ends `deleted` with a
 * `ClientError: …` message) and the members of the EC2 service model (importTaskId,
 * snapshotTaskDetail{diskImageSize, format, progress, snapshotId, status, statusMessage,
 * userBucket{s3Bucket, s3Key}}, tagSet). They were not captured from a live account here.
 */

export const EC2_XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export interface TaskDetail {
  description?: string;
  diskImageSize?: number;
  format: string;
  progress?: string;
  snapshotId?: string;
  status: string;
  statusMessage?: string;
  bucket: string;
  key: string;
}

export interface Task {
  id: string;
  description?: string;
  detail: TaskDetail;
  tags: Record<string, string>;
}

function detailXml(d: TaskDetail): string {
  return [
    '<snapshotTaskDetail>',
    d.description !== undefined ? `<description>${esc(d.description)}</description>` : '',
    d.diskImageSize !== undefined ? `<diskImageSize>${d.diskImageSize.toFixed(1)}</diskImageSize>` : '',
    `<format>${esc(d.format)}</format>`,
    d.progress !== undefined ? `<progress>${esc(d.progress)}</progress>` : '',
    d.snapshotId !== undefined ? `<snapshotId>${esc(d.snapshotId)}</snapshotId>` : '',
    `<status>${esc(d.status)}</status>`,
    d.statusMessage !== undefined ? `<statusMessage>${esc(d.statusMessage)}</statusMessage>` : '',
    `<userBucket><s3Bucket>${esc(d.bucket)}</s3Bucket><s3Key>${esc(d.key)}</s3Key></userBucket>`,
    '</snapshotTaskDetail>',
  ].join('');
}

function tagSetXml(tags: Record<string, string>): string {
  return `<tagSet>${Object.entries(tags).map(([k, v]) => `<item><key>${esc(k)}</key><value>${esc(v)}</value></item>`).join('')}</tagSet>`;
}

export function importSnapshotResponse(requestId: string, task: Task): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<ImportSnapshotResponse xmlns="${EC2_XMLNS}"><requestId>${requestId}</requestId>${task.description !== undefined ? `<description>${esc(task.description)}</description>` : ''}<importTaskId>${task.id}</importTaskId>${detailXml(task.detail)}${tagSetXml(task.tags)}</ImportSnapshotResponse>`;
}

export function describeImportSnapshotTasksResponse(requestId: string, tasks: Task[]): string {
  const items = tasks.map((t) => `<item>${t.description !== undefined ? `<description>${esc(t.description)}</description>` : ''}<importTaskId>${t.id}</importTaskId>${detailXml(t.detail)}${tagSetXml(t.tags)}</item>`).join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<DescribeImportSnapshotTasksResponse xmlns="${EC2_XMLNS}"><requestId>${requestId}</requestId><importSnapshotTaskSet>${items}</importSnapshotTaskSet></DescribeImportSnapshotTasksResponse>`;
}

export function getConsoleOutputResponse(requestId: string, instanceId: string, output: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<GetConsoleOutputResponse xmlns="${EC2_XMLNS}"><requestId>${requestId}</requestId><instanceId>${instanceId}</instanceId><timestamp>${new Date().toISOString()}</timestamp>${output ? `<output>${Buffer.from(output).toString('base64')}</output>` : ''}</GetConsoleOutputResponse>`;
}

/** EC2's error envelope (HTTP 400 for client errors, 503 for RequestLimitExceeded). */
export function errorResponse(requestId: string, code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${esc(code)}</Code><Message>${esc(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`;
}

/** Status messages of a task that imports (AWS reports them in this order). */
export const PROGRESS_STEPS: ReadonlyArray<{ progress: string; statusMessage: string }> = [
  { progress: '3', statusMessage: 'pending' },
  { progress: '19', statusMessage: 'validating' },
  { progress: '42', statusMessage: 'downloading/converting' },
  { progress: '87', statusMessage: 'converting' },
];

/** What AWS reports for a disk it cannot import (a VMDK that is not streamOptimized/monolithicSparse, or not a VMDK). */
export const UNSUPPORTED_VMDK = 'ClientError: Disk validation failed [Unsupported VMDK File Format]';
/** What AWS reports when the VM Import service role is missing or lacks permissions. */
export const ROLE_MISSING = (role: string) => `The service role ${role} provided does not exist or does not have sufficient permissions`;
/** What AWS reports when the object cannot be read. */
export const NO_ACCESS_TO_OBJECT = (key: string) => `User does not have access to the S3 object.(${key})`;
