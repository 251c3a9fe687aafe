/**
 * Structure of docker-compose.yml and the Dockerfile. No Docker engine runs on the development
 * machines or in CI, so the stack is never started here: these checks parse the files and hold
 * them to the project's own tables (src/config/env.ts, src/pools/pools.ts) and to the documented
 * services (docs/docker-compose.md, or its copy in README.md between the compose markers).
 */
import * as fs from 'fs';
import * as path from 'path';
import { parse as parseYaml } from 'yaml';
import { ENV_VARS } from '../../src/config/env';
import { POOL_NAMES, type PoolName } from '../../src/pools/pools';
import { poolRequirements } from '../../src/pools/requirements';

const ROOT = path.resolve(__dirname, '../..');
const COMPOSE_FILE = path.join(ROOT, 'docker-compose.yml');
const DOCKERFILE = path.join(ROOT, 'Dockerfile');
const DOCKERIGNORE = path.join(ROOT, '.dockerignore');
const DOCS_FILE = path.join(ROOT, 'docs/docker-compose.md');
const README_FILE = path.join(ROOT, 'README.md');
const MARK_START = '<!-- compose:start -->';
const MARK_END = '<!-- compose:end -->';

/** The compose service that runs Temporal, and the address every worker must use. */
const TEMPORAL_SERVICE = 'temporal';
const TEMPORAL_IN_NETWORK = `${TEMPORAL_SERVICE}:7233`;
/** Where KUBEDOS_HOME lives in the worker containers. */
const STATE_DIR = '/var/lib/kubedos';
const ARTIFACT_BUCKET = 'kubedos-artifacts';

/** Standard AWS SDK variables a worker may get besides ENV_VARS (MinIO credentials). */
const AWS_SDK_VARS = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION'] as const;
/** Shell variables whose compose defaults are local MinIO development credentials. */
const DEV_CREDENTIAL_VARS = [
  'MINIO_ROOT_USER',
  'MINIO_ROOT_PASSWORD',
  'MINIO_WORKER_ACCESS_KEY',
  'MINIO_WORKER_SECRET_KEY',
];
const SECRET_NAME = /PASSWORD|PASSWD|_PWD$|SECRET|TOKEN|API_KEY|ACCESS_KEY/;

/**
 * What provides each tool or file a pool declares in src/pools/pools.ts: a Debian package the
 * pool's Dockerfile stage installs, or a binary copied into the stage from a build stage. A tool
 * added to a pool without an entry here fails the test, on purpose.
 */
type Provider = { readonly apt: string } | { readonly copied: string } | { readonly base: true };
const PROVIDERS: Readonly<Record<string, Provider>> = {
  mmdebstrap: { apt: 'mmdebstrap' },
  'mkfs.ext4': { apt: 'e2fsprogs' },
  debugfs: { apt: 'e2fsprogs' },
  'mkfs.vfat': { apt: 'dosfstools' },
  mcopy: { apt: 'mtools' },
  mformat: { apt: 'mtools' },
  // grub-mkimage is grub-common's, a dependency of the EFI images the iso format embeds.
  'grub-mkimage': { apt: 'grub-efi-amd64-bin' },
  sfdisk: { apt: 'fdisk' },
  'qemu-img': { apt: 'qemu-utils' },
  xorriso: { apt: 'xorriso' },
  mksquashfs: { apt: 'squashfs-tools' },
  objcopy: { apt: 'binutils' },
  cpio: { apt: 'cpio' },
  gzip: { apt: 'gzip' },
  pigz: { apt: 'pigz' },
  xz: { apt: 'xz-utils' },
  zstd: { apt: 'zstd' },
  // Debian's `mount` package has priority required: every Debian base image has it.
  umount: { base: true },
  '/usr/lib/systemd/boot/efi/linuxx64.efi.stub': { apt: 'systemd-boot-efi' },
  'qemu-system-x86_64': { apt: 'qemu-system-x86' },
  'ssh-keygen': { apt: 'openssh-client' },
  '/usr/share/OVMF/OVMF_CODE_4M.fd': { apt: 'ovmf' },
  '/usr/share/OVMF/OVMF_VARS_4M.fd': { apt: 'ovmf' },
  govc: { copied: '/usr/local/bin/govc' },
};

// ---------------------------------------------------------------------------------------------
// Small typed views of the parsed YAML.

type Json = unknown;
type Service = Record<string, Json>;

function isRecord(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function record(v: Json, what: string): Record<string, Json> {
  if (!isRecord(v)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
}

function stringList(v: Json, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list, got ${JSON.stringify(v)}`);
  return v.map((x) => {
    if (typeof x !== 'string') throw new Error(`${what}: expected strings, got ${JSON.stringify(x)}`);
    return x;
  });
}

/** `environment:` in either form; a value of null means "passed through unset". */
function environmentOf(svc: Service, name: string): Map<string, string | null> {
  const env = new Map<string, string | null>();
  const raw = svc.environment;
  if (raw === undefined || raw === null) return env;
  if (Array.isArray(raw)) {
    for (const item of stringList(raw, `${name}.environment`)) {
      const eq = item.indexOf('=');
      if (eq < 0) env.set(item, null);
      else env.set(item.slice(0, eq), item.slice(eq + 1));
    }
    return env;
  }
  for (const [k, v] of Object.entries(record(raw, `${name}.environment`))) {
    env.set(k, v === null || v === undefined ? null : String(v));
  }
  return env;
}

/** `depends_on:` in either form, as service → condition. */
function dependsOn(svc: Service, name: string): Map<string, string> {
  const deps = new Map<string, string>();
  const raw = svc.depends_on;
  if (raw === undefined || raw === null) return deps;
  if (Array.isArray(raw)) {
    for (const d of stringList(raw, `${name}.depends_on`)) deps.set(d, 'service_started');
    return deps;
  }
  for (const [d, spec] of Object.entries(record(raw, `${name}.depends_on`))) {
    const condition = isRecord(spec) && typeof spec.condition === 'string' ? spec.condition : 'service_started';
    deps.set(d, condition);
  }
  return deps;
}

interface Mount {
  readonly source: string;
  readonly target: string;
  readonly kind: 'bind' | 'volume' | 'anonymous';
}

function mountsOf(svc: Service, name: string): Mount[] {
  const raw = svc.volumes;
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new Error(`${name}.volumes: expected a list`);
  return raw.map((m): Mount => {
    if (typeof m === 'string') {
      const parts = m.split(':');
      if (parts.length === 1) return { source: '', target: parts[0]!, kind: 'anonymous' };
      const source = parts[0]!;
      const kind = /^[./~]/.test(source) ? 'bind' : 'volume';
      return { source, target: parts[1]!, kind };
    }
    const long = record(m, `${name}.volumes[]`);
    const source = typeof long.source === 'string' ? long.source : '';
    const target = String(long.target);
    const kind = long.type === 'bind' ? 'bind' : source ? 'volume' : 'anonymous';
    return { source, target, kind };
  });
}

/** `name[:tag][@digest]`, with a registry port (host:5000/name) not mistaken for a tag. */
function splitImage(ref: string): { name: string; tag?: string; digest?: string } {
  const at = ref.indexOf('@');
  const digest = at >= 0 ? ref.slice(at + 1) : undefined;
  const nameTag = at >= 0 ? ref.slice(0, at) : ref;
  const colon = nameTag.indexOf(':', nameTag.lastIndexOf('/') + 1);
  if (colon < 0) return { name: nameTag, digest };
  return { name: nameTag.slice(0, colon), tag: nameTag.slice(colon + 1), digest };
}

/** Why an image reference is not pinned to one release, or undefined when it is. */
function unpinnedReason(ref: string): string | undefined {
  if (ref.includes('$')) return 'uses interpolation, so the file does not say which version runs';
  const { tag, digest } = splitImage(ref);
  if (digest !== undefined) {
    return /^sha256:[0-9a-f]{64}$/.test(digest) ? undefined : `malformed digest "${digest}"`;
  }
  if (tag === undefined) return 'has no tag (means latest)';
  if (tag === 'latest') return 'is tagged latest';
  // A release: a dotted version (16.9, 1.27.2, 20.19.5-bookworm-slim) or a dated release
  // (MinIO's RELEASE.2025-09-07T16-13-09Z). Bare majors (16, 20-slim) and names float.
  if (/\d+\.\d+/.test(tag) || /^RELEASE\.\d{4}-\d{2}-\d{2}T/.test(tag)) return undefined;
  return `tag "${tag}" names no specific release`;
}

/** `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?err}`, `${NAME?err}`. */
interface Interpolation {
  readonly name: string;
  readonly op?: string;
  readonly arg?: string;
}
function interpolations(text: string): Interpolation[] {
  const found: Interpolation[] = [];
  const re = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    found.push({ name: m[1]!, op: m[2], arg: m[3] });
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Dockerfile: logical instructions grouped by stage.

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}
interface Stage {
  readonly name?: string;
  readonly base: string;
  readonly instructions: Instruction[];
}

function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split(/\r?\n/)) {
    if (/^\s*#/.test(raw)) continue; // comments, also between continuation lines
    const line = raw.trimEnd();
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    if (current.trim()) logical.push(current.trim().replace(/\s+/g, ' '));
    current = '';
  }
  if (current.trim()) logical.push(current.trim());

  const stages: Stage[] = [];
  for (const line of logical) {
    const sp = line.indexOf(' ');
    const keyword = (sp < 0 ? line : line.slice(0, sp)).toUpperCase();
    const args = sp < 0 ? '' : line.slice(sp + 1).trim();
    if (keyword === 'FROM') {
      const words = args.split(' ').filter((w) => !w.startsWith('--'));
      const asAt = words.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({ base: words[0]!, name: asAt >= 0 ? words[asAt + 1] : undefined, instructions: [] });
    } else if (stages.length > 0) {
      stages[stages.length - 1]!.instructions.push({ keyword, args });
    } else if (keyword !== 'ARG') {
      throw new Error(`Dockerfile: ${keyword} before the first FROM`);
    }
  }
  return stages;
}

/** The stage and the stages it is built FROM, nearest first. */
function stageChain(stages: Stage[], stage: Stage): Stage[] {
  const chain = [stage];
  for (let s = stage; ; ) {
    const parent = stages.find((p) => p.name !== undefined && p.name === s.base);
    if (!parent || chain.includes(parent)) return chain;
    chain.push(parent);
    s = parent;
  }
}

function aptPackages(stage: Stage): string[] {
  const pkgs: string[] = [];
  for (const ins of stage.instructions) {
    if (ins.keyword !== 'RUN') continue;
    for (const cmd of ins.args.split(/&&|\|\||;/)) {
      const m = /\bapt-get\s+(?:\S+\s+)*?install\s+(.*)$/.exec(cmd.trim());
      if (!m) continue;
      for (const word of m[1]!.split(/\s+/)) {
        if (word && !word.startsWith('-')) pkgs.push(word.replace(/[=:].*$/, ''));
      }
    }
  }
  return pkgs;
}

/** Destination paths of `COPY --from=...` instructions (binaries brought in from other stages). */
function copiedFromStages(stage: Stage): string[] {
  return stage.instructions
    .filter((i) => i.keyword === 'COPY' && /--from=/.test(i.args))
    .map((i) => i.args.split(' ').filter((w) => !w.startsWith('--')).pop()!);
}

/** Host paths that `COPY`/`ADD` take from the build context. */
function contextSources(stage: Stage): string[] {
  return stage.instructions
    .filter((i) => (i.keyword === 'COPY' || i.keyword === 'ADD') && !/--from=/.test(i.args))
    .flatMap((i) => {
      if (i.args.startsWith('[')) {
        const list = JSON.parse(i.args) as string[];
        return list.slice(0, -1);
      }
      return i.args.split(' ').filter((w) => !w.startsWith('--')).slice(0, -1);
    });
}

/** The TypeScript source a dist/ file is compiled from (tsconfig rootDir is the repository). */
function compiledFrom(distFile: string): string {
  return distFile.replace(/^(\.\/)?dist\//, '').replace(/\.js$/, '.ts');
}

function execForm(args: string): string[] {
  if (args.startsWith('[')) return JSON.parse(args) as string[];
  return ['/bin/sh', '-c', args];
}

// ---------------------------------------------------------------------------------------------
// The documented services: the table whose first header cell is "Service".

function documentedServices(): { source: string; names: string[] } {
  let source = path.relative(ROOT, DOCS_FILE);
  let text: string | undefined;
  if (fs.existsSync(README_FILE)) {
    const readme = fs.readFileSync(README_FILE, 'utf8');
    const start = readme.indexOf(MARK_START);
    const end = readme.indexOf(MARK_END);
    if (start >= 0 || end >= 0) {
      if (start < 0 || end < start) {
        throw new Error(`README.md has an unmatched ${start < 0 ? MARK_END : MARK_START} marker`);
      }
      text = readme.slice(start + MARK_START.length, end);
      source = 'README.md';
    }
  }
  text ??= fs.readFileSync(DOCS_FILE, 'utf8');

  const cells = (line: string) =>
    line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
  const lines = text.split(/\r?\n/);
  const header = lines.findIndex(
    (l, i) => /^\s*\|/.test(l) && /^service$/i.test(cells(l)[0] ?? '') && /^\s*\|?\s*:?-{3,}/.test(lines[i + 1] ?? ''),
  );
  if (header < 0) throw new Error(`${source}: no table whose first column is headed "Service"`);
  const names: string[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!/^\s*\|/.test(line)) break;
    for (const m of (cells(line)[0] ?? '').matchAll(/`([^`]+)`/g)) names.push(m[1]!);
  }
  return { source, names };
}

// ---------------------------------------------------------------------------------------------

const composeText = fs.readFileSync(COMPOSE_FILE, 'utf8');
// merge: compose honours YAML merge keys (<<), which the file uses to share worker settings.
const compose = record(parseYaml(composeText, { merge: true }), 'docker-compose.yml');
const services = record(compose.services, 'services') as Record<string, Service>;
const serviceNames = Object.keys(services);
const service = (name: string): Service => record(services[name], `services.${name}`);

const workerService = (pool: PoolName) => `worker-${pool}`;
const workerServices = POOL_NAMES.map(workerService);
const workerEnvNames = ENV_VARS.filter((v) => v.workers).map((v) => v.name);

const dockerfileText = fs.existsSync(DOCKERFILE) ? fs.readFileSync(DOCKERFILE, 'utf8') : '';
const stages = parseDockerfile(dockerfileText);
const stageNames = new Set(stages.flatMap((s) => (s.name ? [s.name] : [])));

describe('docker-compose.yml: services', () => {
  it('has every service the documentation lists, and documents every service', () => {
    const { source, names } = documentedServices();
    expect(names.length).toBeGreaterThan(0);
    const missing = names.filter((n) => !serviceNames.includes(n));
    expect({ source, missingFromCompose: missing }).toEqual({ source, missingFromCompose: [] });
    const undocumented = serviceNames.filter((n) => !names.includes(n));
    expect({ source, undocumented }).toEqual({ source, undocumented: [] });
  });

  it('runs one worker service per pool, and builds images only for workers', () => {
    expect(serviceNames.filter((n) => n.startsWith('worker-')).sort()).toEqual([...workerServices].sort());
    const built = serviceNames.filter((n) => service(n).build !== undefined);
    expect(built.sort()).toEqual([...workerServices].sort());
  });

  it('pins every image to an explicit version', () => {
    const problems: string[] = [];
    for (const name of serviceNames) {
      const svc = service(name);
      if (svc.image === undefined) {
        if (svc.build === undefined) problems.push(`${name}: neither image nor build`);
        continue;
      }
      const why = unpinnedReason(String(svc.image));
      if (why) problems.push(`${name}: image ${String(svc.image)} ${why}`);
    }
    expect(problems).toEqual([]);
  });

  it('uses the intended server images', () => {
    const image = (n: string) => String(service(n).image);
    expect(image('postgresql')).toMatch(/^postgres:16\.\d+/);
    expect(image('temporal')).toMatch(/^temporalio\/auto-setup:1\.2\d\.\d+/);
    expect(image('temporal-ui')).toMatch(/^temporalio\/ui:2\.\d+\.\d+/);
    expect(image('minio')).toMatch(/^minio\/minio:RELEASE\./);
    expect(image('minio-init')).toMatch(/^minio\/mc:RELEASE\./);
  });

  it('runs Temporal on PostgreSQL and publishes its frontend on 127.0.0.1:7233 for the CLI', () => {
    const env = environmentOf(service(TEMPORAL_SERVICE), TEMPORAL_SERVICE);
    expect(env.get('DB')).toBe('postgres12');
    expect(env.get('POSTGRES_SEEDS')).toBe('postgresql');
    const ports = stringList(service(TEMPORAL_SERVICE).ports, 'temporal.ports');
    expect(ports).toContain('127.0.0.1:7233:7233');
    const dynamicConfig = env.get('DYNAMIC_CONFIG_FILE_PATH');
    expect(dynamicConfig).toMatch(/^config\/dynamicconfig\/.+\.yaml$/);
    const mount = mountsOf(service(TEMPORAL_SERVICE), TEMPORAL_SERVICE).find(
      (m) => m.target === '/etc/temporal/config/dynamicconfig',
    );
    expect(mount?.kind).toBe('bind');
    const file = path.join(ROOT, mount!.source, path.basename(dynamicConfig!));
    expect(fs.existsSync(file)).toBe(true);
    expect(() => parseYaml(fs.readFileSync(file, 'utf8'))).not.toThrow();
  });
});

describe('docker-compose.yml: worker environment', () => {
  it.each(workerServices)('%s gets exactly the worker variables of src/config/env.ts', (name) => {
    const env = environmentOf(service(name), name);
    const keys = [...env.keys()];
    const missing = workerEnvNames.filter((v) => !env.has(v));
    const extra = keys.filter(
      (k) => !(workerEnvNames as readonly string[]).includes(k) && !(AWS_SDK_VARS as readonly string[]).includes(k),
    );
    expect({ missing, extra }).toEqual({ missing: [], extra: [] });
    // The AWS SDK credentials come as a set or not at all.
    const aws = AWS_SDK_VARS.filter((v) => env.has(v));
    expect([0, AWS_SDK_VARS.length]).toContain(aws.length);
  });

  it.each(workerServices)('%s sets each variable or passes it through with a default', (name) => {
    const env = environmentOf(service(name), name);
    const problems: string[] = [];
    for (const v of workerEnvNames) {
      const value = env.get(v);
      if (value === null || value === undefined) {
        problems.push(`${v} is unset (use \${${v}:-default} to pass it through)`);
        continue;
      }
      for (const i of interpolations(value)) {
        if (i.name !== v) problems.push(`${v} is taken from another variable, ${i.name}`);
        else if (i.op !== ':-' && i.op !== '-') problems.push(`${v} passes through without a default`);
      }
    }
    expect(problems).toEqual([]);
  });

  it.each(workerServices)(`%s talks to the compose Temporal service and keeps state in ${STATE_DIR}`, (name) => {
    const env = environmentOf(service(name), name);
    // Literal on purpose: a TEMPORAL_ADDRESS or KUBEDOS_HOME exported on the host for the CLI
    // must never leak into a container, where it would point at the wrong place.
    expect(env.get('TEMPORAL_ADDRESS')).toBe(TEMPORAL_IN_NETWORK);
    expect(env.get('KUBEDOS_HOME')).toBe(STATE_DIR);
  });

  it('gives the Temporal UI the same frontend address', () => {
    expect(environmentOf(service('temporal-ui'), 'temporal-ui').get('TEMPORAL_ADDRESS')).toBe(TEMPORAL_IN_NETWORK);
  });

  it('shares one named volume as KUBEDOS_HOME between the build and kvm pools', () => {
    const stateVolume = (name: string) =>
      mountsOf(service(name), name).find((m) => m.target === STATE_DIR && m.kind === 'volume')?.source;
    const build = stateVolume(workerService('build'));
    expect(build).toBeDefined();
    expect(stateVolume(workerService('kvm'))).toBe(build);
    expect(Object.keys(record(compose.volumes, 'volumes'))).toContain(build);
  });

  it('maps /dev/kvm into the kvm worker', () => {
    const devices = stringList(service(workerService('kvm')).devices, 'worker-kvm.devices');
    expect(devices.map((d) => d.split(':')[0])).toContain('/dev/kvm');
  });
});

describe('docker-compose.yml: wiring', () => {
  it('depends only on existing services, without cycles', () => {
    const problems: string[] = [];
    for (const name of serviceNames) {
      for (const [dep, condition] of dependsOn(service(name), name)) {
        if (!serviceNames.includes(dep)) problems.push(`${name} depends on unknown service ${dep}`);
        if (dep === name) problems.push(`${name} depends on itself`);
        if (!['service_started', 'service_healthy', 'service_completed_successfully'].includes(condition)) {
          problems.push(`${name} → ${dep}: unknown condition ${condition}`);
        }
        if (condition === 'service_healthy' && services[dep] && !isRecord(service(dep).healthcheck)) {
          problems.push(`${name} waits for ${dep} to be healthy, but ${dep} has no healthcheck`);
        }
      }
    }
    expect(problems).toEqual([]);

    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (name: string, trail: string[]): void => {
      if (state.get(name) === 'done') return;
      if (state.get(name) === 'visiting') throw new Error(`depends_on cycle: ${[...trail, name].join(' → ')}`);
      state.set(name, 'visiting');
      for (const dep of dependsOn(service(name), name).keys()) {
        if (services[dep]) visit(dep, [...trail, name]);
      }
      state.set(name, 'done');
    };
    for (const name of serviceNames) visit(name, []);
  });

  it('starts Temporal after PostgreSQL is healthy', () => {
    expect(dependsOn(service(TEMPORAL_SERVICE), TEMPORAL_SERVICE).get('postgresql')).toBe('service_healthy');
    expect(isRecord(service('postgresql').healthcheck)).toBe(true);
  });

  it.each(workerServices)('%s starts after Temporal is healthy', (name) => {
    expect(dependsOn(service(name), name).get(TEMPORAL_SERVICE)).toBe('service_healthy');
    expect(isRecord(service(TEMPORAL_SERVICE).healthcheck)).toBe(true);
  });

  it('creates the artifact bucket once MinIO is healthy, and storage workers wait for it', () => {
    const init = service('minio-init');
    expect(dependsOn(init, 'minio-init').get('minio')).toBe('service_healthy');
    expect(String(init.restart ?? 'no')).toBe('no');
    // The bucket is created by the job's command or by a script it mounts from the repository.
    const texts = [JSON.stringify(init.entrypoint ?? ''), JSON.stringify(init.command ?? '')];
    for (const m of mountsOf(init, 'minio-init').filter((m) => m.kind === 'bind')) {
      const host = path.join(ROOT, m.source);
      const files = fs.statSync(host).isDirectory() ? fs.readdirSync(host).map((f) => path.join(host, f)) : [host];
      for (const f of files) texts.push(fs.readFileSync(f, 'utf8'));
    }
    const all = texts.join('\n');
    expect(all).toMatch(/\bmc\s+mb\b/);
    expect(all).toContain(ARTIFACT_BUCKET);

    for (const name of workerServices) {
      const env = environmentOf(service(name), name);
      if (env.has('AWS_ACCESS_KEY_ID')) {
        expect({ name, condition: dependsOn(service(name), name).get('minio-init') }).toEqual({
          name,
          condition: 'service_completed_successfully',
        });
      }
    }
  });

  it('mounts only repository paths that exist and volumes that are declared', () => {
    const declared = Object.keys(isRecord(compose.volumes) ? compose.volumes : {});
    const problems: string[] = [];
    for (const name of serviceNames) {
      for (const m of mountsOf(service(name), name)) {
        if (m.kind === 'bind' && !fs.existsSync(path.join(ROOT, m.source))) {
          problems.push(`${name}: bind source ${m.source} does not exist`);
        }
        if (m.kind === 'volume' && !declared.includes(m.source)) {
          problems.push(`${name}: volume ${m.source} is not declared under volumes:`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('gives no secret a default except the local MinIO development credentials', () => {
    const problems: string[] = [];
    for (const i of interpolations(composeText)) {
      if (!SECRET_NAME.test(i.name) || DEV_CREDENTIAL_VARS.includes(i.name)) continue;
      if ((i.op === ':-' || i.op === '-') && i.arg) problems.push(`\${${i.name}} defaults to "${i.arg}"`);
    }
    for (const name of serviceNames) {
      for (const [k, v] of environmentOf(service(name), name)) {
        if (!SECRET_NAME.test(k) || v === null || v === '') continue;
        const refs = interpolations(v);
        if (refs.length === 0) problems.push(`${name}: ${k} is a literal secret`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe('Dockerfile', () => {
  it('exists and starts from a pinned node:20 bookworm-slim image', () => {
    expect(stages.length).toBeGreaterThan(0);
    expect(stages[0]!.base).toMatch(/^node:20\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
  });

  it('pins every external base image', () => {
    const problems = stages
      .filter((s) => !stageNames.has(s.base) && s.base !== 'scratch')
      .flatMap((s) => {
        const why = unpinnedReason(s.base);
        return why ? [`FROM ${s.base} ${why}`] : [];
      });
    expect(problems).toEqual([]);
  });

  it('compiles the TypeScript and the workflow bundle the control worker loads', () => {
    const runs = stages.flatMap((s) => s.instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args));
    expect(runs.some((r) => /\bnpm run build\b|\btsc -p tsconfig(\.build)?\.json\b/.test(r))).toBe(true);
    // node dist/<path>/bundle-workflows.js, compiled from a source file that exists, writing
    // dist/workflow-bundle.js (where workers/run-pool.ts looks for it).
    const bundle = runs.map((r) => /\bnode (dist\/\S*bundle-workflows\.js)([^&;|]*)/.exec(r)).find(Boolean);
    expect(bundle).toBeDefined();
    expect(fs.existsSync(path.join(ROOT, compiledFrom(bundle![1]!)))).toBe(true);
    expect(`${bundle![1]} ${bundle![2]}`).toContain('dist/workflow-bundle.js');
  });

  it('installs the Debian packages scripts/debian-packages.txt lists for each pool', () => {
    const file = path.join(ROOT, 'scripts/debian-packages.txt');
    if (!fs.existsSync(file)) return;
    // Sections start with a comment naming the pool: "# build pool: ...".
    const wanted = new Map<PoolName, string[]>();
    let pool: PoolName | undefined;
    for (const raw of fs.readFileSync(file, 'utf8').split(/\r?\n/)) {
      const line = raw.trim();
      const header = /^#\s*(\S+) pool\b/.exec(line);
      if (header) pool = (POOL_NAMES as readonly string[]).includes(header[1]!) ? (header[1] as PoolName) : undefined;
      else if (line.startsWith('#')) pool = undefined;
      else if (line && pool) wanted.set(pool, [...(wanted.get(pool) ?? []), line]);
    }
    expect(wanted.size).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const [p, pkgs] of wanted) {
      const stage = stages.find((s) => s.name === workerService(p));
      const installed = new Set(stage ? stageChain(stages, stage).flatMap(aptPackages) : []);
      for (const pkg of pkgs) if (!installed.has(pkg)) problems.push(`${workerService(p)}: ${pkg} not installed`);
    }
    expect(problems).toEqual([]);
  });

  it('builds govc at the version scripts/setup pins', () => {
    const setup = path.join(ROOT, 'scripts/setup');
    const pinned = fs.existsSync(setup) ? /^GOVMOMI_VERSION=(\S+)/m.exec(fs.readFileSync(setup, 'utf8'))?.[1] : undefined;
    const built = /github\.com\/vmware\/govmomi\/govc@(\S+)/.exec(dockerfileText)?.[1];
    expect(built).toMatch(/^v\d+\.\d+\.\d+$/);
    if (pinned) expect(built).toBe(pinned.replace(/^["']|["']$/g, ''));
  });

  it('copies only paths that exist and that .dockerignore lets through', () => {
    const ignored = fs.existsSync(DOCKERIGNORE)
      ? fs.readFileSync(DOCKERIGNORE, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
      : [];
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist']));
    const problems: string[] = [];
    for (const src of stages.flatMap(contextSources)) {
      const clean = src.replace(/^\.\//, '').replace(/\/$/, '');
      if (!fs.existsSync(path.join(ROOT, clean))) problems.push(`COPY ${src}: no such path`);
      if (ignored.includes(clean) || ignored.includes(clean.split('/')[0]!)) problems.push(`COPY ${src}: excluded by .dockerignore`);
    }
    expect(problems).toEqual([]);
  });

  describe.each(POOL_NAMES.map((p) => [p] as const))('pool %s', (pool) => {
    const name = workerService(pool);

    it(`is built from its own target, ${name}`, () => {
      const build = record(service(name).build, `${name}.build`);
      expect(build.context ?? '.').toBe('.');
      expect(build.dockerfile ?? 'Dockerfile').toBe('Dockerfile');
      expect(build.target).toBe(name);
      expect(stageNames.has(name)).toBe(true);
    });

    it(`runs node dist/workers/${pool}.js`, () => {
      const stage = stages.find((s) => s.name === name)!;
      expect(stage).toBeDefined();
      const override = service(name).command;
      let cmd: string[] | undefined;
      if (override !== undefined) {
        cmd = typeof override === 'string' ? override.split(/\s+/) : stringList(override, `${name}.command`);
      } else {
        for (const s of stageChain(stages, stage)) {
          const last = [...s.instructions].reverse().find((i) => i.keyword === 'CMD');
          if (last) {
            cmd = execForm(last.args);
            break;
          }
        }
      }
      expect(cmd).toEqual(['node', `dist/workers/${pool}.js`]);
      expect(fs.existsSync(path.join(ROOT, compiledFrom(cmd![1]!)))).toBe(true);
      // ...on top of the node base, whatever stages sit in between.
      const chain = stageChain(stages, stage);
      expect(chain[chain.length - 1]!.base).toBe(stages[0]!.base);
    });

    it('provides every tool and file the pool and its plug-ins declare', () => {
      const stage = stages.find((s) => s.name === name)!;
      expect(stage).toBeDefined();
      const chain = stageChain(stages, stage);
      const installed = new Set(chain.flatMap(aptPackages));
      const copied = new Set(chain.flatMap(copiedFromStages));
      const problems: string[] = [];
      const needs = poolRequirements(pool);
      for (const need of [...needs.tools, ...needs.files]) {
        const provider = PROVIDERS[need];
        if (!provider) problems.push(`${need}: no provider listed in compose.test.ts PROVIDERS`);
        else if ('apt' in provider && !installed.has(provider.apt)) problems.push(`${need}: apt package ${provider.apt} not installed`);
        else if ('copied' in provider && !copied.has(provider.copied)) problems.push(`${need}: ${provider.copied} not copied in`);
      }
      expect(problems).toEqual([]);
    });
  });
});
