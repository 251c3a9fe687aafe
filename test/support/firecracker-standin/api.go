package main

// The firecracker STAND-IN: the API subset a KubeDos driver uses, on the unix socket Firecracker
// serves (--api-sock, default /run/firecracker.socket inside the jail), answering as Firecracker
// does: 204 for accepted PUTs, 200 with JSON for GETs, 400 {"fault_message": "…"} for a bad call.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

const maxPayload = 51200

type microVM struct {
	mu         sync.Mutex
	id         string
	root       string
	cfg        standinConfig
	state      string // "Not started" | "Running"
	machine    map[string]any
	bootSource map[string]any
	drives     []map[string]any
	nets       []map[string]any
	taps       map[string]*os.File
	mmdsConfig map[string]any
	mmds       any
	apiLog     *os.File
	socket     string
	vmm        *vmmProcess
	exiting    bool
}

type fault struct {
	status  int
	message string
}

func (f *fault) Error() string { return f.message }

func badRequest(format string, a ...any) *fault {
	return &fault{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

var errAfterStart = "The requested operation is not supported after starting the microVM."

func say(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[kubedos firecracker STAND-IN] "+format+"\n", a...)
}

// jailPath is where a path the API names is on the host: under the jail root, never outside it.
func (vm *microVM) jailPath(p string) string {
	return filepath.Join(vm.root, filepath.Clean("/"+p))
}

func firecrackerMain(argv []string) int {
	id, apiSock := "anonymous-instance", "/run/firecracker.socket"
	for i := 0; i < len(argv); i++ {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(argv[i], "--"), "=")
		if !strings.HasPrefix(argv[i], "--") {
			fmt.Fprintf(os.Stderr, "Arguments parsing error: Found argument '%s' which wasn't expected, or isn't valid in this context.\n", argv[i])
			return 1
		}
		takesValue := map[string]bool{"id": true, "api-sock": true, "start-time-us": true, "start-time-cpu-us": true, "parent-cpu-time-us": true, "level": true, "log-path": true}
		switch {
		case name == "version":
			fmt.Printf("Firecracker v%s\n", version)
			return 0
		case name == "no-seccomp" || name == "boot-timer" || name == "show-level" || name == "show-log-origin":
		case takesValue[name]:
			if !hasValue {
				if i+1 >= len(argv) {
					fmt.Fprintf(os.Stderr, "Arguments parsing error: The argument '--%s' requires a value but none was supplied\n", name)
					return 1
				}
				i++
				value = argv[i]
			}
			if name == "id" {
				id = value
			}
			if name == "api-sock" {
				apiSock = value
			}
		case name == "config-file" || name == "no-api" || name == "metadata" || name == "seccomp-filter" || name == "mmds-size-limit" || name == "http-api-max-payload-size" || name == "snapshot-version" || name == "describe-snapshot":
			fmt.Fprintf(os.Stderr, "stand-in: --%s is a real Firecracker option the stand-in does not model\n", name)
			return 1
		default:
			fmt.Fprintf(os.Stderr, "Arguments parsing error: Found argument '--%s' which wasn't expected, or isn't valid in this context.\n", name)
			return 1
		}
	}
	root := os.Getenv("KUBEDOS_FC_STANDIN_ROOT")
	if root == "" {
		root = "/"
	}
	vm := &microVM{id: id, root: root, state: "Not started", taps: map[string]*os.File{},
		machine: map[string]any{"vcpu_count": int64(1), "mem_size_mib": int64(128), "smt": false, "track_dirty_pages": false}}
	if p := os.Getenv("KUBEDOS_FC_STANDIN_CONFIG"); p != "" {
		cfg, err := readConfig(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "stand-in configuration: %v\n", err)
			return 1
		}
		vm.cfg = cfg
	}
	if fd := os.Getenv("KUBEDOS_FC_STANDIN_LOG_FD"); fd != "" {
		if n, err := strconv.Atoi(fd); err == nil {
			vm.apiLog = os.NewFile(uintptr(n), "api-log")
		}
	}
	vm.socket = vm.jailPath(apiSock)
	if _, err := os.Lstat(vm.socket); err == nil {
		fmt.Fprintf(os.Stderr, "Failed to open the API socket at: %s. Check that it is not already used.\n", apiSock)
		return 1
	}
	ln, err := net.Listen("unix", vm.socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Failed to open the API socket at: %s: %v\n", apiSock, err)
		return 1
	}
	say("%s: API on %s (booting %s)", id, apiSock, map[bool]string{true: "enabled: QEMU -M microvm", false: "DISABLED: InstanceStart starts no guest"}[vm.cfg.Boot])

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		sig := <-stop
		say("%s: %v: exiting", id, sig)
		vm.exit(0)
	}()
	srv := &http.Server{Handler: vm, ReadHeaderTimeout: 10 * time.Second}
	_ = srv.Serve(ln)
	return 0
}

// exit ends the microVM and the process, as Firecracker's VM exit does.
func (vm *microVM) exit(code int) {
	vm.mu.Lock()
	if vm.exiting {
		vm.mu.Unlock()
		select {}
	}
	vm.exiting = true
	vmm := vm.vmm
	vm.mu.Unlock()
	if vmm != nil {
		vmm.stop(5 * time.Second)
	}
	for _, f := range vm.taps {
		f.Close()
	}
	_ = os.Remove(vm.socket)
	os.Exit(code)
}

func (vm *microVM) logCall(r *http.Request, status int, body []byte) {
	if vm.apiLog == nil {
		return
	}
	entry := map[string]any{"t": time.Now().UTC().Format(time.RFC3339Nano), "id": vm.id, "method": r.Method, "path": r.URL.Path, "status": status}
	if r.URL.Path == "/mmds" {
		// The MMDS document carries the node's private host key: log its shape only.
		var doc map[string]json.RawMessage
		if json.Unmarshal(body, &doc) == nil {
			keys := []string{}
			for k := range doc {
				keys = append(keys, k)
			}
			entry["bodyKeys"] = keys
		}
	} else if len(body) > 0 {
		entry["body"] = json.RawMessage(body)
		if !json.Valid(body) {
			entry["body"] = string(body)
		}
	}
	line, _ := json.Marshal(entry)
	_, _ = vm.apiLog.Write(append(line, '\n'))
}

func (vm *microVM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if vm.cfg.APIDelayMs > 0 {
		time.Sleep(time.Duration(vm.cfg.APIDelayMs) * time.Millisecond)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	var result any
	var status int
	exitAfter := false
	if err != nil {
		err = badRequest("Failed to read the request body: %v", err)
	} else if len(body) > maxPayload {
		err = badRequest("Request payload with size %d is larger than the limit of %d allowed by server.", len(body), maxPayload)
	} else {
		vm.mu.Lock()
		wasStopping := vm.state == "stopping"
		result, err = vm.route(r.Method, r.URL.Path, body)
		exitAfter = err == nil && !wasStopping && vm.state == "stopping"
		vm.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Server", "Firecracker API")
	switch {
	case err != nil:
		f, ok := err.(*fault)
		if !ok {
			f = badRequest("%s", err.Error())
		}
		status = f.status
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"fault_message": f.message})
	case result == nil:
		status = http.StatusNoContent
		w.WriteHeader(status)
	default:
		status = http.StatusOK
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(result)
	}
	vm.logCall(r, status, body)
	if exitAfter {
		go func() {
			time.Sleep(200 * time.Millisecond)
			vm.exit(0)
		}()
	}
}

var idPath = regexp.MustCompile(`^/(drives|network-interfaces)/([^/]+)$`)

func (vm *microVM) route(method, path string, body []byte) (any, error) {
	preBoot := func() error {
		if vm.state != "Not started" {
			return badRequest("%s", errAfterStart)
		}
		return nil
	}
	switch {
	case method == "GET" && path == "/":
		return map[string]any{"app_name": "Firecracker", "id": vm.id, "state": vm.state, "vmm_version": version}, nil
	case method == "GET" && path == "/version":
		return map[string]any{"firecracker_version": version}, nil
	case method == "GET" && path == "/machine-config":
		return vm.machine, nil
	case method == "GET" && path == "/vm/config":
		cfg := map[string]any{"machine-config": vm.machine, "drives": nonNil(vm.drives), "network-interfaces": nonNil(vm.nets)}
		if vm.bootSource != nil {
			cfg["boot-source"] = vm.bootSource
		}
		if vm.mmdsConfig != nil {
			cfg["mmds-config"] = vm.mmdsConfig
		}
		return cfg, nil
	case method == "GET" && path == "/mmds":
		if vm.mmds == nil {
			return nil, &fault{http.StatusNotFound, "The MMDS data store is not initialized."}
		}
		return vm.mmds, nil
	case method == "PUT" && path == "/machine-config":
		if err := preBoot(); err != nil {
			return nil, err
		}
		m, err := validate(machineConfiguration, body)
		if err != nil {
			return nil, err
		}
		for k, v := range map[string]any{"smt": false, "track_dirty_pages": false} {
			if _, ok := m[k]; !ok {
				m[k] = v
			}
		}
		vm.machine = m
		return nil, nil
	case method == "PUT" && path == "/boot-source":
		if err := preBoot(); err != nil {
			return nil, err
		}
		b, err := validate(bootSource, body)
		if err != nil {
			return nil, err
		}
		if f, err := os.Open(vm.jailPath(b["kernel_image_path"].(string))); err != nil {
			return nil, badRequest("The kernel file cannot be opened: %s", osErr(err))
		} else {
			f.Close()
		}
		if p, ok := b["initrd_path"].(string); ok {
			if f, err := os.Open(vm.jailPath(p)); err != nil {
				return nil, badRequest("The initrd file cannot be opened due to invalid path or invalid permissions. %s", osErr(err))
			} else {
				f.Close()
			}
		}
		vm.bootSource = b
		return nil, nil
	case method == "PUT" && path == "/logger":
		_, err := validate(loggerDef, body)
		return nil, err
	case method == "PUT" && idPath.MatchString(path):
		if err := preBoot(); err != nil {
			return nil, err
		}
		m := idPath.FindStringSubmatch(path)
		if m[1] == "drives" {
			return nil, vm.putDrive(m[2], body)
		}
		return nil, vm.putNetworkInterface(m[2], body)
	case method == "PUT" && path == "/mmds/config":
		if err := preBoot(); err != nil {
			return nil, err
		}
		c, err := validate(mmdsConfig, body)
		if err != nil {
			return nil, err
		}
		ifaces := c["network_interfaces"].([]string)
		if len(ifaces) == 0 {
			return nil, badRequest("The list of network interface IDs that allow forwarding MMDS requests is empty.")
		}
		for _, id := range ifaces {
			if vm.netIndex(id) < 0 {
				return nil, badRequest("The list of network interface IDs provided contains at least one ID that does not correspond to any existing network interface.")
			}
		}
		if _, ok := c["version"]; !ok {
			c["version"] = "V1"
		}
		if _, ok := c["ipv4_address"]; !ok {
			c["ipv4_address"] = "169.254.169.254"
		}
		vm.mmdsConfig = c
		return nil, nil
	case (method == "PUT" || method == "PATCH") && path == "/mmds":
		if _, err := decodeStrict(body); err != nil {
			return nil, err
		}
		var doc map[string]any
		_ = json.Unmarshal(body, &doc)
		if method == "PATCH" {
			if vm.mmds == nil {
				return nil, badRequest("The MMDS data store is not initialized.")
			}
			vm.mmds = mergePatch(vm.mmds, doc)
		} else {
			vm.mmds = doc
		}
		return nil, vm.publishMmds()
	case method == "PUT" && path == "/actions":
		a, err := validate(instanceActionInfo, body)
		if err != nil {
			return nil, err
		}
		return nil, vm.action(a["action_type"].(string))
	case method == "PATCH" && (path == "/machine-config" || idPath.MatchString(path) || path == "/vm"):
		return nil, badRequest("stand-in: %s %s is real Firecracker API the stand-in does not model", method, path)
	}
	return nil, badRequest("Invalid request method and/or path: %s %s.", method, path)
}

func nonNil(list []map[string]any) []map[string]any {
	if list == nil {
		return []map[string]any{}
	}
	return list
}

func osErr(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		if errno, ok := pe.Err.(syscall.Errno); ok {
			return fmt.Sprintf("%s (os error %d)", capitalize(errno.Error()), int(errno))
		}
		return pe.Err.Error()
	}
	return err.Error()
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (vm *microVM) putDrive(pathID string, body []byte) error {
	d, err := validate(driveDef, body)
	if err != nil {
		return err
	}
	if d["drive_id"] != pathID {
		return badRequest("The id from the path [%s] does not match the id from the body [%v]!", pathID, d["drive_id"])
	}
	if _, ok := d["socket"]; ok {
		return badRequest("stand-in: vhost-user block devices are real Firecracker API the stand-in does not model")
	}
	p, ok := d["path_on_host"].(string)
	if !ok {
		return badRequest("Unable to create the virtio block device: missing path_on_host")
	}
	readOnly, _ := d["is_read_only"].(bool)
	d["is_read_only"] = readOnly
	flags := os.O_RDWR
	if readOnly {
		flags = os.O_RDONLY
	}
	// Opened as the jailed user, as Firecracker opens it: a writable drive must be writable by it.
	f, err := os.OpenFile(vm.jailPath(p), flags, 0)
	if err != nil {
		return badRequest("Unable to create the virtio block device: Virtio backend error: Error manipulating the backing file: %s %s", osErr(err), p)
	}
	f.Close()
	for i, existing := range vm.drives {
		if existing["drive_id"] == pathID {
			vm.drives = append(vm.drives[:i], vm.drives[i+1:]...)
			break
		}
	}
	if d["is_root_device"] == true {
		for _, existing := range vm.drives {
			if existing["is_root_device"] == true {
				return badRequest("A root block device already exists!")
			}
		}
	}
	vm.drives = append(vm.drives, d)
	return nil
}

func (vm *microVM) netIndex(id string) int {
	for i, n := range vm.nets {
		if n["iface_id"] == id {
			return i
		}
	}
	return -1
}

// openTap attaches to an existing tap device as Firecracker does (TUNSETIFF on the jail's
// /dev/net/tun, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), as the jailed user: the tap must exist and
// belong to it (without CAP_NET_ADMIN, TUNSETIFF cannot make one).
func openTap(tun, name string) (*os.File, error) {
	if len(name) == 0 || len(name) > 15 {
		return nil, fmt.Errorf("invalid tap name %q", name)
	}
	f, err := os.OpenFile(tun, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	var ifr [40]byte
	copy(ifr[:16], name)
	binary.LittleEndian.PutUint16(ifr[16:], 0x0002|0x1000|0x4000)
	const tunsetiff = 0x400454ca
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), tunsetiff, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		f.Close()
		return nil, e
	}
	return f, nil
}

func (vm *microVM) putNetworkInterface(pathID string, body []byte) error {
	n, err := validate(networkInterface, body)
	if err != nil {
		return err
	}
	if n["iface_id"] != pathID {
		return badRequest("The id from the path [%s] does not match the id from the body [%v]!", pathID, n["iface_id"])
	}
	dev := n["host_dev_name"].(string)
	for _, existing := range vm.nets {
		if existing["iface_id"] != pathID && existing["host_dev_name"] == dev {
			return badRequest("Could not create the network device: The host device name %s is already in use.", dev)
		}
	}
	if i := vm.netIndex(pathID); i >= 0 {
		if f := vm.taps[pathID]; f != nil {
			f.Close()
		}
		vm.nets = append(vm.nets[:i], vm.nets[i+1:]...)
	}
	f, err := openTap(vm.jailPath("/dev/net/tun"), dev)
	if err != nil {
		return badRequest("Could not create the network device: Open tap device failed: Error while creating ifreq structure: %v. Invalid TUN/TAP Backend provided by %s. Check our documentation on setting up the network devices.", err, dev)
	}
	vm.taps[pathID] = f
	vm.nets = append(vm.nets, n)
	return nil
}

func mergePatch(target any, patch map[string]any) any {
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range patch {
		if v == nil {
			delete(t, k)
		} else if pm, ok := v.(map[string]any); ok {
			t[k] = mergePatch(t[k], pm)
		} else {
			t[k] = v
		}
	}
	return t
}

func (vm *microVM) action(kind string) error {
	switch kind {
	case "FlushMetrics":
		return badRequest("The metrics system is not initialized.")
	case "SendCtrlAltDel":
		if vm.state != "Running" {
			return badRequest("The requested operation is not supported before starting the microVM.")
		}
		say("%s: SendCtrlAltDel: the guest is told to reboot, which its reboot=k makes a VM exit", vm.id)
		if vm.vmm != nil {
			go vm.vmm.powerOff()
		} else {
			vm.state = "stopping"
		}
		return nil
	}
	// InstanceStart
	if vm.state != "Not started" {
		return badRequest("%s", errAfterStart)
	}
	if vm.bootSource == nil {
		return badRequest("Cannot start microvm without kernel configuration.")
	}
	kernel := vm.jailPath(vm.bootSource["kernel_image_path"].(string))
	head := make([]byte, 4)
	f, err := os.Open(kernel)
	if err != nil {
		return badRequest("Cannot load kernel due to invalid memory configuration or invalid kernel image: %s", osErr(err))
	}
	_, _ = io.ReadFull(f, head)
	f.Close()
	if string(head) != "\x7fELF" {
		return badRequest("Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: failed to load ELF kernel image")
	}
	if vm.cfg.Boot {
		vmm, err := vm.startVMM()
		if err != nil {
			return badRequest("Internal error while starting microVM: %v", err)
		}
		vm.vmm = vmm
	} else {
		say("%s: InstanceStart accepted with booting DISABLED: no guest runs", vm.id)
		if vm.cfg.EmulateGuest {
			go vm.emulateGuest(kernel)
		}
	}
	vm.state = "Running"
	return nil
}

// emulateGuest prints what the image prints on its console once first boot applied MMDS (no-boot mode only).
func (vm *microVM) emulateGuest(kernel string) {
	time.Sleep(time.Duration(vm.cfg.ReadyDelayMs) * time.Millisecond)
	raw, _ := os.ReadFile(kernel)
	if strings.Contains(string(raw), "KUBEDOS-STANDIN-PANIC") {
		fmt.Println("[    1.000000] Kernel panic - not syncing: KUBEDOS-STANDIN-PANIC (stand-in: emulated guest)")
		vm.exit(0)
	}
	vm.mu.Lock()
	hostname := mmdsHostname(vm.mmds)
	vm.mu.Unlock()
	if hostname == "" {
		fmt.Println("kubedos: mmds: MMDS holds no meta-data: no metadata applied (stand-in: emulated guest)")
		return
	}
	fmt.Println("kubedos: mmds: read meta-data and user-data (stand-in: emulated guest)")
	fmt.Printf("kubedos: ready %s\n", hostname)
}

var localHostnameRe = regexp.MustCompile(`(?m)^local-hostname: '((?:[^']|'')*)'$`)

func mmdsHostname(doc any) string {
	m, _ := doc.(map[string]any)
	latest, _ := m["latest"].(map[string]any)
	meta, _ := latest["meta-data"].(string)
	if found := localHostnameRe.FindStringSubmatch(meta); found != nil {
		return strings.ReplaceAll(found[1], "''", "'")
	}
	return ""
}
