/**
 * `installerIso.source` value that asks the Foundry to assemble Debian installer media itself, from
 * the build host's debian-installer-12-netboot-amd64 package laid out like Debian's mini.iso.
 * Pure data: the spec's schema and the engine both read it.
 */
export const ASSEMBLED_INSTALLER_ISO = 'debian-mini';
