module kubedos.dev/firecracker-standin

go 1.21
