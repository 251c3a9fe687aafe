/** Exit codes of the kubedos CLI; documented in the README and in `kubedos --help`. */
export const EXIT = {
  ok: 0,
  /** Something failed at run time (a tool, a workflow). */
  failure: 1,
  /** Bad command line. */
  usage: 2,
  /** The spec file is invalid. */
  invalidSpec: 3,
  /** Temporal could not be reached or started, or its namespace is not ready for KubeDos (cluster init). */
  unavailable: 4,
  /** A required worker pool is missing or lacks tools (doctor; deploy when no worker of a pool it needs polls). */
  capabilityMissing: 5,
  /** A rebuild did not reproduce the recorded artifacts bit for bit (verify). */
  notReproducible: 6,
  /** Interrupted by Ctrl-C. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];
