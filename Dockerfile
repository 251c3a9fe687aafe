# KubeDos worker images: one Dockerfile, one target per worker pool.
#
#   docker build --target worker-build -t kubedos-worker-build .
#
# Targets: worker-control, worker-build, worker-kvm, worker-vsphere, worker-cloud. Each runs
# `node dist/workers/<pool>.js` and carries only the tools its pool needs (src/pools/pools.ts).
# docker-compose.yml builds every target; test/unit/compose.test.ts checks this file against the
# pool definitions (tools -> Debian packages, one target and entry point per pool).

# ---------------------------------------------------------------------------------------------
# Node base: pinned Debian 12 slim image, shared by every stage below.
FROM node:20.19.5-bookworm-slim AS node-base
WORKDIR /opt/kubedos

# ---------------------------------------------------------------------------------------------
# Compile: TypeScript -> dist/, the workflow bundle, then production-only node_modules.
# Same steps as scripts/setup: tsconfig.build.json, then dist/workflow-bundle.js, which the
# control worker loads instead of bundling the workflows at start-up.
FROM node-base AS compile
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
RUN npx tsc -p tsconfig.build.json \
 && node dist/src/temporal/bundle-workflows.js dist/workflow-bundle.js \
 && test -f dist/workflow-bundle.js \
 && npm prune --omit=dev

# ---------------------------------------------------------------------------------------------
# Runtime: what every pool shares. tini reaps QEMU/mmdebstrap children and forwards SIGTERM so a
# worker drains its activities before the container stops.
FROM node-base AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    KUBEDOS_HOME=/var/lib/kubedos
COPY --from=compile /opt/kubedos/package.json ./package.json
COPY --from=compile /opt/kubedos/node_modules ./node_modules
COPY --from=compile /opt/kubedos/dist ./dist
RUN mkdir -p /var/lib/kubedos && chown node:node /var/lib/kubedos
ENTRYPOINT ["/usr/bin/tini", "--"]

# ---------------------------------------------------------------------------------------------
# control: workflows only, no tools.
FROM runtime AS worker-control
USER node
CMD ["node", "dist/workers/control.js"]

# ---------------------------------------------------------------------------------------------
# build (the Foundry): rootfs, filesystems, partition tables, boot files, ISOs, conversions.
# The package list is the build pool's section of scripts/debian-packages.txt (the test checks).
# Runs as root: mmdebstrap --mode=root needs it (see cap_add in docker-compose.yml).
FROM runtime AS worker-build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      mmdebstrap debian-archive-keyring \
      e2fsprogs \
      dosfstools mtools \
      fdisk \
      systemd-boot-efi \
      binutils \
      qemu-utils \
      xorriso squashfs-tools \
      cpio gzip pigz xz-utils zstd \
      grub-efi-amd64-bin grub-pc-bin isolinux syslinux-common \
      debian-installer-12-netboot-amd64 \
 && rm -rf /var/lib/apt/lists/*
CMD ["node", "dist/workers/build.js"]

# ---------------------------------------------------------------------------------------------
# kvm: boots images under QEMU (KVM when /dev/kvm is mapped, TCG otherwise), reaches them by SSH.
# Runs as root so the mapped /dev/kvm is usable whatever group owns it on the host.
FROM runtime AS worker-kvm
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      qemu-system-x86 qemu-utils ovmf ipxe-qemu openssh-client dosfstools mtools \
      xorriso dnsmasq-base ipxe \
 && rm -rf /var/lib/apt/lists/*
CMD ["node", "dist/workers/kvm.js"]

# ---------------------------------------------------------------------------------------------
# govc is not packaged by Debian 12: build it from the Go module (checked against the Go checksum
# database), statically, at the version scripts/setup pins, and copy only the binary.
FROM golang:1.24.6-bookworm AS govc
RUN CGO_ENABLED=0 GOBIN=/out go install -trimpath \
      -ldflags "-s -w -X github.com/vmware/govmomi/govc/flags.BuildVersion=0.46.3" \
      github.com/vmware/govmomi/govc@v0.46.3

# vsphere: ESXi/vSphere through govc.
FROM runtime AS worker-vsphere
COPY --from=govc /out/govc /usr/local/bin/govc
USER node
CMD ["node", "dist/workers/vsphere.js"]

# ---------------------------------------------------------------------------------------------
# cloud: AWS/Azure/GCP and S3 uploads through the SDKs, in-process; no tools.
FROM runtime AS worker-cloud
USER node
CMD ["node", "dist/workers/cloud.js"]
