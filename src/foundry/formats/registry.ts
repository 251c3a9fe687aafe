/**
 * The output formats this build of the Foundry makes: one line per format, in the order help
 * lists them. A new format is a file in this folder (its descriptor, see ./format.ts) and a line here.
 */
export { raw } from './raw';
export { qcow2 } from './qcow2';
export { vmdk } from './vmdk';
export { ova } from './ova';
export { firecracker } from './firecracker';
export { iso } from './iso';
export { installerMedia } from './installer-media';
export { ami } from './ami';
export { azure } from './azure';
export { gce } from './gce';
export { pxe } from './pxe';
