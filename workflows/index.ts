/** Every workflow the control pool runs. Orchestration only: no I/O, no Node built-ins. */
export * from './doctor';
export * from './manufacture';
export { fleet } from './fleet';
export { rollout } from './rollout';
export { fleetNode } from './node';
export { rebuildHerd } from './rebuild-herd';
export { deployPlatform } from './deploy-platform';
