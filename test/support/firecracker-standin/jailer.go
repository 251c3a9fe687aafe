package main

// The jailer STAND-IN: Firecracker's jailer command line (docs/jailer.md), checked the way the
// real jailer checks it, then the jail it builds (see main.go for what is and is not modelled).

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type jailerArgs struct {
	id, execFile, chrootBase, netns, parentCgroup, cgroupVersion string
	uid, gid                                                     uint32
	cgroups, resourceLimits                                      []string
	daemonize, newPidNs                                          bool
	extra                                                        []string
}

var (
	jailIDRe     = regexp.MustCompile(`^[a-zA-Z0-9-]{1,64}$`)
	cgroupArgRe  = regexp.MustCompile(`^([a-z_]+)\.([a-z0-9_.]+)=(.+)$`)
	cgroupV1     = map[string]bool{"cpu": true, "cpuset": true, "cpuacct": true, "memory": true, "pids": true, "blkio": true, "devices": true, "freezer": true, "hugetlb": true, "net_cls": true}
	cgroupV2     = map[string]bool{"cpu": true, "cpuset": true, "memory": true, "pids": true, "io": true, "hugetlb": true}
	resourceArgs = map[string]bool{"fsize": true, "no-file": true}
)

func jailerFail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "Jailer error: "+format+"\n", a...)
	return 1
}

// parseJailer reads `--name value` and `--name=value` options up to `--`; what follows goes to firecracker.
func parseJailer(argv []string) (*jailerArgs, error) {
	a := &jailerArgs{chrootBase: "/srv/jailer", cgroupVersion: "1"}
	seen := map[string]bool{}
	uid, gid := "", ""
	for i := 0; i < len(argv); i++ {
		arg := argv[i]
		if arg == "--" {
			a.extra = append(a.extra, argv[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "--") {
			return nil, fmt.Errorf("Arguments parsing error: Found argument '%s' which wasn't expected, or isn't valid in this context.", arg)
		}
		name, value, hasValue := strings.Cut(arg[2:], "=")
		flag := name == "daemonize" || name == "new-pid-ns"
		repeatable := name == "cgroup" || name == "resource-limit"
		if seen[name] && !repeatable {
			return nil, fmt.Errorf("Arguments parsing error: The argument '--%s' was provided more than once.", name)
		}
		seen[name] = true
		if !flag && !hasValue {
			if i+1 >= len(argv) || strings.HasPrefix(argv[i+1], "--") {
				return nil, fmt.Errorf("Arguments parsing error: The argument '--%s' requires a value but none was supplied", name)
			}
			i++
			value = argv[i]
		}
		switch name {
		case "id":
			a.id = value
		case "exec-file":
			a.execFile = value
		case "uid":
			uid = value
		case "gid":
			gid = value
		case "chroot-base-dir":
			a.chrootBase = value
		case "netns":
			a.netns = value
		case "parent-cgroup":
			a.parentCgroup = value
		case "cgroup-version":
			a.cgroupVersion = value
		case "cgroup":
			a.cgroups = append(a.cgroups, value)
		case "resource-limit":
			a.resourceLimits = append(a.resourceLimits, value)
		case "daemonize":
			a.daemonize = true
		case "new-pid-ns":
			a.newPidNs = true
		default:
			return nil, fmt.Errorf("Arguments parsing error: Found argument '--%s' which wasn't expected, or isn't valid in this context.", name)
		}
	}
	for _, required := range []string{"id", "exec-file", "uid", "gid"} {
		if !seen[required] {
			return nil, fmt.Errorf("Arguments parsing error: Missing mandatory argument: --%s", required)
		}
	}
	if !jailIDRe.MatchString(a.id) {
		return nil, fmt.Errorf("Invalid instance ID: %s (alphanumeric characters and hyphens, at most 64)", a.id)
	}
	for _, v := range []struct {
		name string
		text string
		dest *uint32
	}{{"uid", uid, &a.uid}, {"gid", gid, &a.gid}} {
		n, err := strconv.ParseUint(v.text, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("Invalid %s: %s", v.name, v.text)
		}
		*v.dest = uint32(n)
	}
	if !filepath.IsAbs(a.chrootBase) {
		return nil, fmt.Errorf("Invalid chroot base directory: %s is not an absolute path", a.chrootBase)
	}
	if a.cgroupVersion != "1" && a.cgroupVersion != "2" {
		return nil, fmt.Errorf("Invalid cgroup version: %s", a.cgroupVersion)
	}
	known := cgroupV1
	if a.cgroupVersion == "2" {
		known = cgroupV2
	}
	for _, c := range a.cgroups {
		m := cgroupArgRe.FindStringSubmatch(c)
		if m == nil {
			return nil, fmt.Errorf("Invalid format for cgroups: %s (expected <cgroup_file>=<value>)", c)
		}
		if !known[m[1]] {
			return nil, fmt.Errorf("Controller %s is unavailable in cgroup v%s", m[1], a.cgroupVersion)
		}
	}
	if a.parentCgroup != "" && (filepath.IsAbs(a.parentCgroup) || strings.Contains(a.parentCgroup, "..")) {
		return nil, fmt.Errorf("Invalid parent cgroup: %s must be a relative path without '..'", a.parentCgroup)
	}
	for _, r := range a.resourceLimits {
		k, v, ok := strings.Cut(r, "=")
		if _, err := strconv.ParseUint(v, 10, 64); !ok || !resourceArgs[k] || err != nil {
			return nil, fmt.Errorf("Invalid resource argument: %s", r)
		}
	}
	return a, nil
}

func linkOrCopy(src, dst string) error {
	_ = os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func mkdev(major, minor uint32) int {
	return int((major << 8) | minor)
}

func jailerMain(argv []string) int {
	a, err := parseJailer(argv)
	if err != nil {
		return jailerFail("%v", err)
	}
	self, err := os.Executable()
	if err != nil {
		return jailerFail("cannot find own executable: %v", err)
	}
	configPath := self + ".standin.json"
	cfg, err := readConfig(configPath)
	if err != nil {
		return jailerFail("stand-in configuration: %v", err)
	}
	st, err := os.Stat(a.execFile)
	if err != nil || !st.Mode().IsRegular() {
		return jailerFail("Failed to canonicalize path %s: No such file or directory", a.execFile)
	}
	execName := filepath.Base(a.execFile)
	if !strings.Contains(execName, "firecracker") {
		return jailerFail("Invalid filename. The filename of `--exec-file` option must contain \"firecracker\": %s", execName)
	}
	if a.newPidNs {
		return jailerFail("--new-pid-ns is a real jailer option the stand-in does not model")
	}
	if a.netns != "" {
		if _, err := os.Stat(a.netns); err != nil {
			return jailerFail("Failed to open network namespace %s: %v", a.netns, err)
		}
	}
	jailDir := filepath.Join(a.chrootBase, execName, a.id)
	root := filepath.Join(jailDir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return jailerFail("Failed to create folder %s: %v", root, err)
	}
	// The real jailer copies the exec file; a hard link (same bytes) keeps 1000 jails cheap.
	if err := linkOrCopy(a.execFile, filepath.Join(root, execName)); err != nil {
		return jailerFail("Failed to copy %s to the jail: %v", a.execFile, err)
	}

	if len(a.cgroups) > 0 {
		if cfg.CgroupRoot == "" {
			return jailerFail("stand-in: --cgroup given but the stand-in configuration has no cgroupRoot (it never writes the machine's real cgroups)")
		}
		parent := a.parentCgroup
		if parent == "" {
			parent = execName
		}
		pid := []byte(strconv.Itoa(os.Getpid()))
		for _, c := range a.cgroups {
			m := cgroupArgRe.FindStringSubmatch(c)
			file, value := m[1]+"."+m[2], m[3]
			dir := filepath.Join(cfg.CgroupRoot, parent, a.id)
			procs := "cgroup.procs"
			if a.cgroupVersion == "1" {
				dir = filepath.Join(cfg.CgroupRoot, m[1], parent, a.id)
				procs = "tasks"
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return jailerFail("Failed to create cgroup %s: %v", dir, err)
			}
			if err := os.WriteFile(filepath.Join(dir, file), []byte(value+"\n"), 0o644); err != nil {
				return jailerFail("Failed to write to %s: %v", filepath.Join(dir, file), err)
			}
			if err := os.WriteFile(filepath.Join(dir, procs), pid, 0o644); err != nil {
				return jailerFail("Failed to write to %s: %v", filepath.Join(dir, procs), err)
			}
		}
	}

	noFile := uint64(2048)
	for _, r := range a.resourceLimits {
		k, v, _ := strings.Cut(r, "=")
		n, _ := strconv.ParseUint(v, 10, 64)
		if k == "no-file" {
			noFile = n
		} else if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
			return jailerFail("Failed to set fsize limit: %v", err)
		}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: noFile, Max: noFile}); err != nil {
		return jailerFail("Failed to set no-file limit: %v", err)
	}

	for _, dev := range []struct {
		path         string
		major, minor uint32
	}{{"dev/net/tun", 10, 200}, {"dev/kvm", 10, 232}} {
		p := filepath.Join(root, dev.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return jailerFail("Failed to create %s: %v", filepath.Dir(p), err)
		}
		_ = os.Remove(p)
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o600, mkdev(dev.major, dev.minor)); err != nil {
			return jailerFail("Failed to create %s via mknod: %v", p, err)
		}
		if err := os.Chown(p, int(a.uid), int(a.gid)); err != nil {
			return jailerFail("Failed to change owner for %s: %v", p, err)
		}
	}
	if err := os.Chown(root, int(a.uid), int(a.gid)); err != nil {
		return jailerFail("Failed to change owner for %s: %v", root, err)
	}

	// The API log is opened before privileges are dropped and inherited by the jailed process.
	env := []string{"KUBEDOS_FC_STANDIN_ROOT=" + root, "KUBEDOS_FC_STANDIN_CONFIG=" + configPath}
	if cfg.APILog != "" {
		f, err := os.OpenFile(cfg.APILog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return jailerFail("stand-in API log %s: %v", cfg.APILog, err)
		}
		fd := f.Fd()
		if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_SETFD, 0); e != 0 {
			return jailerFail("stand-in API log: %v", e)
		}
		env = append(env, fmt.Sprintf("KUBEDOS_FC_STANDIN_LOG_FD=%d", fd))
	}

	runtime.LockOSThread()
	if a.netns != "" {
		f, err := os.Open(a.netns)
		if err != nil {
			return jailerFail("Failed to open network namespace %s: %v", a.netns, err)
		}
		const sysSetns, cloneNewnet = 308, 0x40000000
		if _, _, e := syscall.RawSyscall(sysSetns, f.Fd(), cloneNewnet, 0); e != 0 {
			return jailerFail("Failed to join network namespace %s: %v", a.netns, e)
		}
		f.Close()
	}
	if a.daemonize {
		if _, err := syscall.Setsid(); err != nil {
			return jailerFail("Failed to daemonize: setsid: %v", err)
		}
		null, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
		if err != nil {
			return jailerFail("Failed to daemonize: %v", err)
		}
		for _, fd := range []int{0, 1, 2} {
			if err := syscall.Dup2(int(null.Fd()), fd); err != nil {
				return jailerFail("Failed to daemonize: dup2: %v", err)
			}
		}
	}
	if err := os.Chdir(root); err != nil {
		return jailerFail("Failed to chdir into the jail: %v", err)
	}
	if err := syscall.Setgroups([]int{}); err != nil {
		return jailerFail("Failed to drop supplementary groups: %v", err)
	}
	if err := syscall.Setgid(int(a.gid)); err != nil {
		return jailerFail("Failed to change gid: %v", err)
	}
	if err := syscall.Setuid(int(a.uid)); err != nil {
		return jailerFail("Failed to change uid: %v", err)
	}
	now := time.Now().UnixMicro()
	args := append([]string{"./" + execName, "--id=" + a.id, fmt.Sprintf("--start-time-us=%d", now), "--start-time-cpu-us=0"}, a.extra...)
	err = syscall.Exec(filepath.Join(root, execName), args, env)
	return jailerFail("Failed to exec into %s: %v", execName, err)
}
