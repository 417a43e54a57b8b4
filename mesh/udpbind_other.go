//go:build !linux

package mesh

import "golang.zx2c4.com/wireguard/conn"

// newUDPBind is wireguard-go's default bind where the mesh has no bind of
// its own (udpbind.go).
func newUDPBind() conn.Bind { return conn.NewDefaultBind() }
