module kubedos.dev/hollow-node

go 1.21
