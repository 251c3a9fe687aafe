/**
 * The aws target's pure parts: its spec (what `validate` refuses), how AWS error codes become
 * typed errors (retryable or not, naming what to fix), the tags that carry a node's labels and
 * identity, the idempotency tokens, and the managed security group's rule arithmetic. The calls
 * themselves are tested against moto and the stand-in in test/e2e/aws.test.ts.
 */
import { AwsApiError, AwsCredentialsError, AwsInvalidRequestError, AwsUnauthorizedError, AwsUnavailableError, KubedosError } from '../../src/errors';
import { aws } from '../../src/targets/aws';
import { awsError, credentialSource, nodeFromTags, nodeTags } from '../../src/targets/aws/api';
import { ruleKeys, runToken, wantedIngress } from '../../src/targets/aws/driver';
import { amiName, importToken } from '../../src/targets/aws/import';
import { generateIdentity, publicPart } from '../../src/targets/identity';

const base = { type: 'aws', region: 'eu-west-1', subnet: 'subnet-0123456789abcdef0', securityGroups: ['sg-0123456789abcdef0'], importBucket: 'kubedos-imports' };
const problems = (over: Record<string, unknown>) => {
  const r = aws.schema.safeParse({ ...base, ...over });
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('the aws target spec', () => {
  test('defaults', () => {
    expect(aws.schema.parse(base)).toEqual({ ...base, instanceType: 't3.small', address: 'private', importPrefix: 'kubedos-imports/', importRole: 'vmimport', tags: {} });
  });
  test.each([
    [{ region: 'europe' }, /region: invalid AWS region "europe"/],
    [{ subnet: 'sub-1' }, /subnet: invalid subnet id/],
    [{ instanceType: 't2.micro' }, /instanceType: instance type t2.micro is a Xen instance/],
    [{ importBucket: 'My_Bucket' }, /importBucket: invalid S3 bucket name/],
    [{ importPrefix: 'no-slash' }, /importPrefix: invalid S3 key prefix/],
    [{ roleArn: 'arn:aws:iam::12:role/x' }, /roleArn: invalid IAM role ARN/],
    [{ tags: { 'kubedos:fleet': 'x' } }, /tags\.kubedos:fleet: invalid tag key/],
    [{ tags: { 'aws:x': 'y' } }, /invalid tag key/],
    [{ securityGroups: undefined }, /exactly one of securityGroups .* and managedSecurityGroup/],
    [{ managedSecurityGroup: { allowFrom: ['10.0.0.0/8'] } }, /exactly one of/],
    [{ securityGroups: undefined, managedSecurityGroup: { allowFrom: ['10.0.0.1/8'] } }, /has host bits set: write the network address, e.g. 10.0.0.0\/8/],
    [{ securityGroups: undefined, managedSecurityGroup: { allowFrom: ['300.0.0.0/8'] } }, /invalid IPv4 CIDR/],
    [{ securityGroups: ['sg-0123456789abcdef0', 'sg-0123456789abcdef0'] }, /duplicate security group/],
  ])('refuses %j', (over, why) => {
    expect(problems(over)).toEqual(expect.arrayContaining([expect.stringMatching(why)]));
  });
  test('a managed group alone is fine, port 22 by default; metal Xen-family types are Nitro', () => {
    expect(problems({ securityGroups: undefined, managedSecurityGroup: { allowFrom: ['203.0.113.0/24'] } })).toEqual([]);
    expect(aws.schema.parse({ ...base, securityGroups: undefined, managedSecurityGroup: { allowFrom: ['203.0.113.0/24'] } }).managedSecurityGroup).toEqual({ allowFrom: ['203.0.113.0/24'], ports: [22] });
    expect(problems({ instanceType: 'i3.metal' })).toEqual([]);
  });
});

describe('AWS errors become typed errors', () => {
  const err = (name: string, message = 'm', status = 400) => Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });
  test.each([
    ['RequestLimitExceeded', AwsUnavailableError, true],
    ['Throttling', AwsUnavailableError, true],
    ['InsufficientInstanceCapacity', AwsUnavailableError, true],
    ['VcpuLimitExceeded', AwsUnavailableError, true],
    ['InternalError', AwsUnavailableError, true],
    ['InvalidParameterValue', AwsInvalidRequestError, false],
    ['InvalidParameterCombination', AwsInvalidRequestError, false],
    ['InvalidSubnetID.NotFound', AwsInvalidRequestError, false],
    ['UnauthorizedOperation', AwsUnauthorizedError, false],
    ['AuthFailure', AwsCredentialsError, false],
    ['ExpiredToken', AwsCredentialsError, false],
    ['CredentialsProviderError', AwsCredentialsError, false],
    ['SomethingNew', AwsApiError, false],
  ])('%s', (code, type, retryable) => {
    const e = awsError('t', 'RunInstances', err(code), 'AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY');
    expect(e).toBeInstanceOf(type);
    expect(e).toBeInstanceOf(KubedosError);
    expect(e.retryable).toBe(retryable);
    expect(e.name).toBe(type.name);
  });
  test('a 5xx without a known code and a lost connection are retryable', () => {
    expect(awsError('t', 'X', err('Weird', 'm', 503), 's').retryable).toBe(true);
    expect(awsError('t', 'X', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 's')).toBeInstanceOf(AwsUnavailableError);
  });
  test('hints name what to fix', () => {
    expect(awsError('t', 'RunInstances', err('InvalidSubnetID.NotFound'), 's').hint).toMatch(/fix subnet/);
    expect(awsError('t', 'RunInstances', err('InvalidGroup.NotFound'), 's').hint).toMatch(/securityGroups/);
    expect(awsError('t', 'RunInstances', err('InvalidParameterValue'), 's').hint).toMatch(/instanceType/);
    expect(awsError('t', 'S3 PutObject', err('NoSuchBucket'), 's').hint).toMatch(/importBucket/);
    expect(awsError('t', 'RunInstances', err('UnauthorizedOperation'), 'profile p').hint).toMatch(/allow RunInstances to the identity behind profile p/);
    expect(awsError('t', 'X', err('AuthFailure'), 'profile p').hint).toMatch(/fix profile p on the cloud worker/);
    // Assuming the role was refused: a credentials problem, naming the role.
    const assume = awsError('t', 'DescribeInstances', err('AccessDenied', 'User: arn:aws:iam::1:user/u is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::1:role/r'), 'profile p, assuming role arn:aws:iam::1:role/r');
    expect(assume).toBeInstanceOf(AwsCredentialsError);
    expect(assume.message).toMatch(/assuming role arn:aws:iam::1:role\/r/);
  });
  test('credentials are named by where they come from, never by their value', () => {
    expect(credentialSource({ profile: 'dev' }, {})).toMatch(/^profile dev /);
    expect(credentialSource({}, { AWS_ACCESS_KEY_ID: 'AKIASECRET', AWS_SESSION_TOKEN: 'x' })).toBe('AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN');
    expect(credentialSource({ roleArn: 'arn:aws:iam::123456789012:role/k' }, { AWS_PROFILE: 'ops' })).toBe('AWS_PROFILE=ops, assuming role arn:aws:iam::123456789012:role/k');
    expect(credentialSource({}, {})).toMatch(/standard chain .*none found/);
    expect(credentialSource({}, { AWS_ACCESS_KEY_ID: 'AKIASECRET' })).not.toContain('AKIASECRET');
  });
});

describe('tags and tokens', () => {
  const spec = aws.schema.parse({ ...base, tags: { team: 'a' } });
  const identity = publicPart(generateIdentity('web-1'));
  const labels = { platform: 'p', fleet: 'web', generation: 3, image: 'worker', imageDigest: 'd'.repeat(64) };
  test('a node\'s labels and identity round-trip through its tags; another target\'s or a hand-made instance is not ours', () => {
    const tags = nodeTags('t1', spec, 'p-web-0001', labels, identity);
    expect(Object.keys(tags).length).toBeLessThanOrEqual(14);
    expect(tags).toMatchObject({ Name: 'p-web-0001', team: 'a' });
    expect(nodeFromTags(tags, 't1')).toEqual({ nodeId: 'p-web-0001', labels, identity });
    expect(nodeFromTags(tags, 't2')).toBeUndefined();
    expect(nodeFromTags({ ...tags, 'kubedos:managed': 'false' }, 't1')).toBeUndefined();
    const { 'kubedos:host-key': _k, ...partial } = tags;
    expect(nodeFromTags(partial, 't1')).toBeUndefined();
    for (const v of Object.values(tags)) expect(v.length).toBeLessThanOrEqual(256);
  });
  test('RunInstances tokens: one per node and attempt, within EC2\'s 64 characters; import tokens per uploaded object', () => {
    const a = runToken('p-web-0001', 'a'.repeat(32));
    expect(a.length).toBeLessThanOrEqual(64);
    expect(runToken('p-web-0001', 'a'.repeat(32))).toBe(a);
    expect(runToken('p-web-0001', 'b'.repeat(32))).not.toBe(a);
    expect(runToken('p-web-0002', 'a'.repeat(32))).not.toBe(a);
    const t = importToken('eu-west-1', 'c'.repeat(64), '2026-01-01T00:00:00.000Z');
    expect(t.length).toBeLessThanOrEqual(64);
    expect(importToken('eu-west-1', 'c'.repeat(64), '2026-01-02T00:00:00.000Z')).not.toBe(t);
    expect(amiName('worker', 'c'.repeat(64))).toBe(`kubedos-worker-${'c'.repeat(16)}`);
  });
  test('managed group rules: each port to each CIDR, and every other rule is extra', () => {
    const want = wantedIngress([22, 443], ['203.0.113.0/24']);
    expect(ruleKeys(want).sort()).toEqual(['tcp/22/203.0.113.0/24', 'tcp/443/203.0.113.0/24']);
    expect(ruleKeys([{ IpProtocol: '-1', UserIdGroupPairs: [{ GroupId: 'sg-1' }], Ipv6Ranges: [{ CidrIpv6: '::/0' }] }])).toEqual(['-1/undefined/::/0', '-1/undefined/sg-1']);
  });
});
