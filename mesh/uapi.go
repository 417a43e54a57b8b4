package mesh

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.zx2c4.com/wireguard/device"
)

// listenUAPI serves the standard WireGuard UAPI protocol on a unix socket,
// read-only: "get" answers as wireguard-go would, minus the private_key line;
// "set" is refused with EPERM. Peers come from the policy, never from
// whoever can reach a socket, and no socket ever hands out the node key.
// `wg show` needs only "get"; it then omits the interface's own public key.
func listenUAPI(path string, dev *device.Device, logf func(string, ...any)) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("mesh: uapi socket directory: %w", err)
	}
	// A stale socket from a crashed run would make Listen fail; remove it
	// only if it really is a socket nobody answers on.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("mesh: uapi path %s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("mesh: uapi socket %s is in use by another process", path)
		}
		os.Remove(path)
	}
	// Connecting needs write permission on the socket, which the usual
	// umask already denies to others; Chmod then narrows it to the owner.
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("mesh: uapi socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("mesh: uapi socket: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					logf("mesh: uapi accept: %v", err)
				}
				return
			}
			go serveUAPI(c, dev)
		}
	}()
	return ln, nil
}

const uapiEPERM = 1

func serveUAPI(c net.Conn, dev *device.Device) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		op, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch op {
		case "get=1\n":
			if b, err := r.ReadByte(); err != nil || b != '\n' {
				return
			}
			var buf bytes.Buffer
			if err := dev.IpcGetOperation(&buf); err != nil {
				fmt.Fprintf(c, "errno=%d\n\n", 5) // EIO
				clear(buf.Bytes()[:buf.Cap()])
				continue
			}
			out := withoutPrivateKey(buf.Bytes())
			clear(buf.Bytes()[:buf.Cap()])
			out = append(out, "errno=0\n\n"...)
			if _, err := c.Write(out); err != nil {
				return
			}
		case "set=1\n":
			// Drain the set body (it ends with an empty line) and refuse it.
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == "\n" {
					break
				}
			}
			fmt.Fprintf(c, "errno=%d\n\n", uapiEPERM)
		default:
			return
		}
	}
}

// withoutPrivateKey copies a UAPI get answer minus its private_key line,
// working on bytes so that no immutable string copy of the key is made.
func withoutPrivateKey(get []byte) []byte {
	out := make([]byte, 0, len(get))
	for line := range bytes.SplitAfterSeq(get, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("private_key=")) {
			out = append(out, line...)
		}
	}
	return out
}
