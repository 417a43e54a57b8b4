package mesh

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// uapiServer serves the standard WireGuard UAPI protocol read-only: "get"
// answers as wireguard-go would, minus the private_key and preshared_key
// lines; "set" is refused with EPERM. Peers come from the policy, never from
// whoever can reach a socket, and no socket ever hands out a key. `wg show`
// needs only "get"; it then omits the interface's own public key.
type uapiServer struct {
	ln  net.Listener
	dev *device.Device

	mu    sync.Mutex // guards conns and closed
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
}

const (
	uapiEPERM = 1
	uapiEIO   = 5
	// A UAPI client that stays silent this long is dropped, and a line
	// longer than uapiMaxLine ends the connection: nothing legitimate
	// (wg show, a monitoring agent) needs more.
	uapiIdle    = 30 * time.Second
	uapiMaxLine = 4096
)

func newUAPIServer(ln net.Listener, dev *device.Device, logf func(string, ...any)) *uapiServer {
	s := &uapiServer{ln: ln, dev: dev, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					logf("mesh: uapi accept: %v", err)
				}
				return
			}
			s.mu.Lock()
			if s.done {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.wg.Add(1)
			s.mu.Unlock()
			go func() {
				defer s.wg.Done()
				serveUAPI(c, dev)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

func (s *uapiServer) close() {
	s.mu.Lock()
	s.done = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// serveUAPI answers UAPI operations on c until EOF, an error, or an
// operation it does not know.
func serveUAPI(c net.Conn, dev *device.Device) {
	defer c.Close()
	r := bufio.NewReaderSize(c, uapiMaxLine)
	readLine := func() ([]byte, bool) {
		c.SetReadDeadline(time.Now().Add(uapiIdle))
		l, err := r.ReadSlice('\n')
		return l, err == nil // a line longer than the buffer is an error too
	}
	for {
		op, ok := readLine()
		if !ok {
			return
		}
		switch string(op) {
		case "get=1\n":
			if end, ok := readLine(); !ok || len(end) != 1 {
				return
			}
			var buf bytes.Buffer
			if err := dev.IpcGetOperation(&buf); err != nil {
				clear(buf.Bytes()[:buf.Cap()])
				fmt.Fprintf(c, "errno=%d\n\n", uapiEIO)
				continue
			}
			out := withoutKeys(buf.Bytes())
			clear(buf.Bytes()[:buf.Cap()])
			out = append(out, "errno=0\n\n"...)
			c.SetWriteDeadline(time.Now().Add(uapiIdle))
			if _, err := c.Write(out); err != nil {
				return
			}
		case "set=1\n":
			// Drain the set body (it ends with an empty line) and refuse it.
			for {
				l, ok := readLine()
				if !ok {
					return
				}
				if len(l) == 1 {
					break
				}
			}
			fmt.Fprintf(c, "errno=%d\n\n", uapiEPERM)
		default:
			return
		}
	}
}

// withoutKeys copies a UAPI get answer minus its private_key and
// preshared_key lines, working on bytes so that no immutable string copy of
// a key is made. Relay endpoints are shown as addresses (uapiShowEndpoint).
func withoutKeys(get []byte) []byte {
	out := make([]byte, 0, len(get))
	for line := range bytes.SplitAfterSeq(get, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("private_key=")) && !bytes.HasPrefix(line, []byte("preshared_key=")) {
			out = append(out, uapiShowEndpoint(line)...)
		}
	}
	return out
}
