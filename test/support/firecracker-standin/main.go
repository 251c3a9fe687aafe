// kubedos-firecracker-standin: a STAND-IN for Firecracker's `jailer` and `firecracker` binaries,
// for tests and benchmarks on machines where Firecracker cannot run (no usable /dev/kvm, no
// package ships it). One binary, two personalities chosen by the name it is run as (a name
// containing "jailer" is the jailer; anything else is firecracker), installed at the paths a
// Firecracker target's spec names.
//
//   - jailer (jailer.go): the documented command line (docs/jailer.md), validated as the real
//     jailer does; builds <chroot-base>/<exec-name>/<id>/root, puts the exec file there, creates
//     /dev/net/tun and /dev/kvm nodes in it, chowns it, applies --cgroup values (under the
//     config's cgroupRoot, never the machine's real cgroup tree) and resource limits, joins
//     --netns, drops to --uid/--gid and execs the jailed firecracker. Deviations, flagged: no
//     pivot_root/chroot (the jailed process resolves API paths under the jail root instead, so a
//     path outside it is still refused), the exec file is hard-linked rather than copied, and
//     --new-pid-ns is not modelled.
//   - firecracker (api.go): the API subset a KubeDos driver uses on its unix socket, request
//     bodies validated against the field names and types of Firecracker's OpenAPI description
//     (src/firecracker/swagger/firecracker.yaml, 1.17.0-dev; the subset is unchanged since 1.8),
//     errors as Firecracker answers them (HTTP 400 {"fault_message": "…"}). On InstanceStart it
//     boots the configured kernel, initrd, drives and boot arguments with `qemu-system-x86_64 -M
//     microvm` (boot.go; the argv comes from the project's one QEMU argv builder through a helper,
//     qemu-argv.ts) and serves the MMDS document to the guest; or, with booting disabled (flagged
//     in its log), it only records the start, optionally emulating the guest's readiness line.
//
// Configuration: <path of the jailer>.standin.json (see standinConfig). Standard library only, so
// scripts/setup builds it offline; small enough to run a thousand at once.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
)

// standinConfig is what the test or benchmark that installed the stand-in wants of it.
type standinConfig struct {
	// Boot starts QEMU on InstanceStart; false answers InstanceStart without starting anything.
	Boot bool `json:"boot"`
	// EmulateGuest (only without Boot): print what the image's first boot prints on the console,
	// `kubedos: ready <local-hostname from MMDS>`, ReadyDelayMs after InstanceStart. A kernel file
	// containing "KUBEDOS-STANDIN-PANIC" panics instead (the microVM exits).
	EmulateGuest bool `json:"emulateGuest"`
	ReadyDelayMs int  `json:"readyDelayMs"`
	// BootHelper is the argv that prints QEMU's argv for a VM description given as a file.
	BootHelper []string `json:"bootHelper"`
	// CgroupRoot is where --cgroup values are written (a directory of the test's own).
	CgroupRoot string `json:"cgroupRoot"`
	// APILog, when set, receives one JSON line per API request (method, path, status, body).
	APILog string `json:"apiLog"`
	// APIDelayMs delays every API answer (tests that interrupt a driver halfway through a launch).
	APIDelayMs int `json:"apiDelayMs"`
}

const version = "1.17.0-dev (kubedos stand-in)"

func readConfig(path string) (standinConfig, error) {
	var c standinConfig
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func main() {
	// A thousand of these run at once: one OS thread's worth of scheduling and a small heap.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(50)
	name := filepath.Base(os.Args[0])
	if strings.Contains(name, "jailer") {
		os.Exit(jailerMain(os.Args[1:]))
	}
	os.Exit(firecrackerMain(os.Args[1:]))
}
