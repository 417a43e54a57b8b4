package keys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrKeyFilePermissions is returned when a key file is readable or writable
// by anyone but its owner.
var ErrKeyFilePermissions = errors.New("key file permissions too open")

// LoadOrCreateNodeKey reads the node key at path, or makes a new one there
// (mode 0600, written to a temporary file, fsynced and then hard-linked into
// place, so a crash never leaves half a key and an existing key is never
// replaced). created reports whether it made one.
//
// It refuses a file that group or others can access: a key that others may
// have read is not a key this node can trust to be its own.
func LoadOrCreateNodeKey(path string) (k NodePrivate, created bool, err error) {
	k, err = LoadNodeKey(path)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return NodePrivate{}, false, err
	}
	k = NewNodePrivate()
	if err := writeSecretFile(path, k); err != nil {
		k.Zero()
		return NodePrivate{}, false, err
	}
	return k, true, nil
}

// LoadNodeKey reads an existing node key file. It opens the file without
// following symlinks and checks the open file itself (no check-then-open
// race): a regular file, owned by this process's user, with no group or
// other permissions.
func LoadNodeKey(path string) (NodePrivate, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return NodePrivate{}, fmt.Errorf("keys: node key %s is a symlink; a key file must be a regular file", path)
		}
		return NodePrivate{}, fmt.Errorf("keys: node key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return NodePrivate{}, fmt.Errorf("keys: node key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return NodePrivate{}, fmt.Errorf("keys: node key %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return NodePrivate{}, fmt.Errorf("keys: node key %s has mode %#o: %w; run: chmod 600 %s",
			path, perm, ErrKeyFilePermissions, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return NodePrivate{}, fmt.Errorf("keys: node key %s belongs to uid %d, not to this process (uid %d): %w",
			path, st.Uid, os.Geteuid(), ErrKeyFilePermissions)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return NodePrivate{}, fmt.Errorf("keys: node key: %w", err)
	}
	defer clear(b)
	k, err := ParseNodePrivate(bytes.TrimSpace(b))
	if err != nil {
		return NodePrivate{}, fmt.Errorf("keys: node key %s: %w", path, err)
	}
	return k, nil
}

func writeSecretFile(path string, k NodePrivate) error {
	text, err := k.MarshalSecretText()
	if err != nil {
		return fmt.Errorf("keys: encode node key: %w", err)
	}
	defer clear(text)
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: node key directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".node.key-*")
	if err != nil {
		return fmt.Errorf("keys: write node key: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// CreateTemp already uses 0600; Chmod makes it independent of that detail.
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("keys: write node key: %w", err)
	}
	if _, err := f.Write(text); err != nil {
		return fmt.Errorf("keys: write node key: %w", err)
	}
	if _, err := f.Write([]byte{'\n'}); err != nil {
		return fmt.Errorf("keys: write node key: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("keys: write node key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keys: write node key: %w", err)
	}
	// Link, not rename: never replace a key that appeared meanwhile.
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("keys: write node key: %w", err)
	}
	os.Remove(tmp)
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
