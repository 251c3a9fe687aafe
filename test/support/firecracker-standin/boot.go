package main

// Booting (stand-in config `boot: true`): on InstanceStart the configured kernel, initrd, drives,
// boot arguments, vCPUs and memory run under `qemu-system-x86_64 -M microvm` (TCG), the closest
// runnable relative of a Firecracker microVM. The argv is not built here: the project's one QEMU
// argv builder (src/foundry/tools/qemu-system.ts) makes it, through the helper named by
// `bootHelper` (qemu-argv.ts), from the VM's configuration as the API received it. The serial
// console goes to this process's stdout, as Firecracker's does; MMDS is served to the guest at the
// configured address through QEMU's guestfwd (test/support/mmds-standin.cjs reads the document
// this process keeps up to date). When QEMU exits, so does this process (a VM exit).

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type vmmProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (vm *microVM) standinDir() string {
	return vm.jailPath("/run/kubedos-standin")
}

// publishMmds writes the MMDS document where the guest's MMDS stand-in reads it (boot mode only).
func (vm *microVM) publishMmds() error {
	if !vm.cfg.Boot {
		return nil
	}
	dir := vm.standinDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("stand-in: %v", err)
	}
	doc := vm.mmds
	if doc == nil {
		doc = map[string]any{}
	}
	raw, _ := json.Marshal(doc)
	tmp := filepath.Join(dir, "mmds.json.tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("stand-in: %v", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "mmds.json"))
}

func (vm *microVM) resolved(list []map[string]any, key string) []map[string]any {
	out := []map[string]any{}
	for _, e := range list {
		c := map[string]any{}
		for k, v := range e {
			c[k] = v
		}
		if p, ok := c[key].(string); ok {
			c[key] = vm.jailPath(p)
		}
		out = append(out, c)
	}
	return out
}

func (vm *microVM) startVMM() (*vmmProcess, error) {
	if len(vm.cfg.BootHelper) == 0 {
		return nil, fmt.Errorf("stand-in: booting is enabled but no bootHelper is configured")
	}
	if err := vm.publishMmds(); err != nil {
		return nil, err
	}
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	boot := map[string]any{}
	for k, v := range vm.bootSource {
		boot[k] = v
	}
	boot["kernel_image_path"] = vm.jailPath(boot["kernel_image_path"].(string))
	if p, ok := boot["initrd_path"].(string); ok {
		boot["initrd_path"] = vm.jailPath(p)
	}
	description := map[string]any{
		"boot-source":        boot,
		"drives":             vm.resolved(vm.drives, "path_on_host"),
		"machine-config":     vm.machine,
		"network-interfaces": nonNil(vm.nets),
		"serialFile":         "/dev/fd/3",
		"mmdsFile":           filepath.Join(vm.standinDir(), "mmds.json"),
		"mmdsToken":          hex.EncodeToString(token),
	}
	if vm.mmdsConfig != nil {
		description["mmds-config"] = vm.mmdsConfig
	}
	descFile := filepath.Join(vm.standinDir(), "vm.json")
	raw, _ := json.Marshal(description)
	if err := os.WriteFile(descFile, raw, 0o600); err != nil {
		return nil, err
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + vm.standinDir(), "TS_NODE_TRANSPILE_ONLY=1"}
	helper := exec.Command(vm.cfg.BootHelper[0], append(vm.cfg.BootHelper[1:], descFile)...)
	helper.Env = env
	helper.Stderr = os.Stderr
	out, err := helper.Output()
	if err != nil {
		return nil, fmt.Errorf("boot helper failed: %v", err)
	}
	var argv []string
	if err := json.Unmarshal(out, &argv); err != nil || len(argv) == 0 {
		return nil, fmt.Errorf("boot helper printed no argv: %s", strings.TrimSpace(string(out)))
	}
	bin, err := lookPath(argv[0])
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &vmmProcess{done: make(chan struct{})}
	started := make(chan error, 1)
	// Pdeathsig belongs to the thread that started QEMU: that thread stays locked until QEMU ends,
	// so QEMU dies with this process even when it is SIGKILLed (as Firecracker's VM would).
	go func() {
		runtime.LockOSThread()
		cmd := exec.Command(bin, argv[1:]...)
		cmd.Env = env
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		cmd.ExtraFiles = []*os.File{pw}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.cmd = cmd
		started <- nil
		pw.Close()
		err := cmd.Wait()
		say("%s: QEMU exited (%v): VM exit", vm.id, err)
		close(p.done)
	}()
	if err := <-started; err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	go func() {
		_, _ = io.Copy(os.Stdout, pr)
	}()
	go func() {
		<-p.done
		// Let the console copier drain, then end like Firecracker does when its guest stops.
		time.Sleep(300 * time.Millisecond)
		vm.exit(0)
	}()
	say("%s: InstanceStart: booting under QEMU -M microvm (pid %d)", vm.id, p.cmd.Process.Pid)
	return p, nil
}

func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range []string{"/usr/local/bin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// powerOff ends the guest as its Ctrl-Alt-Del reboot would (reboot=k: the VM exits).
func (p *vmmProcess) powerOff() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
}

func (p *vmmProcess) stop(grace time.Duration) {
	p.powerOff()
	select {
	case <-p.done:
	case <-time.After(grace):
		if p.cmd != nil && p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
		}
		<-p.done
	}
}
