// kubedos-hollow-node: one simulated node for the hollow target (kubemark-style scale testing).
// It "boots" for -boot-delay, then reports ready the way a real image does: a console line and
// an HTTP readiness endpoint that answers with the identity the Foundry gave it. A few MiB of RSS,
// so a thousand of them fit on a laptop. Standard library only: built offline by scripts/setup.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

type identity struct {
	NodeID             string `json:"nodeId"`
	Hostname           string `json:"hostname"`
	MachineID          string `json:"machineId"`
	HostKeyFingerprint string `json:"hostKeyFingerprint"`
	ImageDigest        string `json:"imageDigest"`
}

// writeAtomically publishes a small state file so the driver never reads half of it.
func writeAtomically(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func main() {
	dir := flag.String("dir", "", "node state directory (identity.json in, addr and console.log out)")
	bootDelay := flag.Duration("boot-delay", 0, "simulated boot time")
	unhealthy := flag.Bool("unhealthy", false, "never become ready (fault injection)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "kubedos-hollow-node: -dir is required")
		os.Exit(2)
	}
	raw, err := os.ReadFile(filepath.Join(*dir, "identity.json"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubedos-hollow-node:", err)
		os.Exit(1)
	}
	var id identity
	if err := json.Unmarshal(raw, &id); err != nil {
		fmt.Fprintln(os.Stderr, "kubedos-hollow-node: identity.json:", err)
		os.Exit(1)
	}

	console, err := os.OpenFile(filepath.Join(*dir, "console.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubedos-hollow-node:", err)
		os.Exit(1)
	}
	fmt.Fprintf(console, "hollow node %s booting image %s\n", id.Hostname, id.ImageDigest)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubedos-hollow-node: listen:", err)
		os.Exit(1)
	}
	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(id)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	go func() { _ = http.Serve(ln, mux) }()
	if err := writeAtomically(filepath.Join(*dir, "addr"), []byte(ln.Addr().String())); err != nil {
		fmt.Fprintln(os.Stderr, "kubedos-hollow-node:", err)
		os.Exit(1)
	}

	go func() {
		time.Sleep(*bootDelay)
		if *unhealthy {
			fmt.Fprintf(console, "kubedos: first boot failed on %s (fault injected)\n", id.Hostname)
			return
		}
		ready.Store(true)
		fmt.Fprintf(console, "kubedos: ready %s\n", id.Hostname)
	}()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	fmt.Fprintf(console, "hollow node %s powering off\n", id.Hostname)
}
