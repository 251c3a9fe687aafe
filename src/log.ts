/**
 * Logs go to stderr (stdout is for results), one line each: human-readable by default,
 * JSON lines with KUBEDOS_LOG_FORMAT=json. Level from KUBEDOS_LOG_LEVEL (default info).
 */
const LEVELS = { debug: 10, info: 20, warn: 30, error: 40 } as const;
export type LogLevel = keyof typeof LEVELS;

type Fields = Record<string, unknown>;

function threshold(): number {
  const level = (process.env.KUBEDOS_LOG_LEVEL ?? 'info') as LogLevel;
  return LEVELS[level] ?? LEVELS.info;
}

function write(level: LogLevel, fields: Fields, message: string): void {
  if (LEVELS[level] < threshold()) return;
  const time = new Date().toISOString();
  if (process.env.KUBEDOS_LOG_FORMAT === 'json') {
    process.stderr.write(`${JSON.stringify({ time, level, msg: message, ...fields })}\n`);
    return;
  }
  const extra = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  process.stderr.write(`${time} ${level.padEnd(5)} ${message}${extra ? ` ${extra}` : ''}\n`);
}

export interface Logger {
  debug(fields: Fields, message: string): void;
  info(fields: Fields, message: string): void;
  warn(fields: Fields, message: string): void;
  error(fields: Fields, message: string): void;
  child(fields: Fields): Logger;
}

function make(base: Fields): Logger {
  return {
    debug: (f, m) => write('debug', { ...base, ...f }, m),
    info: (f, m) => write('info', { ...base, ...f }, m),
    warn: (f, m) => write('warn', { ...base, ...f }, m),
    error: (f, m) => write('error', { ...base, ...f }, m),
    child: (f) => make({ ...base, ...f }),
  };
}

export const logger: Logger = make({});
