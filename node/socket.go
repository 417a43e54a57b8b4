package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// listenPrivate listens on a unix socket that only this process's user (and
// root) may use. The socket file is made 0600, but that is checked too late
// to matter for a connection made between listen and chmod, so every
// accepted connection's peer credentials (SO_PEERCRED) are checked as well.
// A stale socket from a node that did not shut down is replaced; a live one
// is an error.
func listenPrivate(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if socketAnswers(path) {
			return nil, fmt.Errorf("%s is in use by another process: %w", path, errSocketInUse)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return &ownerListener{Listener: ln}, nil
}

var errSocketInUse = errors.New("socket in use")

func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ownerListener accepts only connections from our own uid or root.
type ownerListener struct{ net.Listener }

func (l *ownerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if peerIsOwner(c) {
			return c, nil
		}
		c.Close()
	}
}

func peerIsOwner(c net.Conn) bool {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return false
	}
	return cred.Uid == 0 || int(cred.Uid) == os.Geteuid()
}
