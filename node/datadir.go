package node

// The data directory: owner-only, one running node at a time, and where the
// node key and the local API socket live.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/custos-cctv/custos/keys"
)

// lockDataDir takes an exclusive flock on DIR/node.lock for the life of the
// node: one node per data directory, decided by the kernel, and released
// when the process dies however it dies.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "node.lock"), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("node: another node is already running in %s", dir)
		}
		return nil, fmt.Errorf("node: lock %s: %w", dir, err)
	}
	return f, nil
}

// KeyPath is where a node keeps its WireGuard key.
func KeyPath(dir string) string { return filepath.Join(dir, "node.key") }

// SocketPath is the node's local API socket.
func SocketPath(dir string) string { return filepath.Join(dir, "custos.sock") }

// claimDir makes or checks the data directory and locks it, before any
// socket or key is touched: one node per data directory. The flock decides
// between two that start at once (a socket check alone let both past it,
// and the loser then blamed the audit journal). A founded or joined
// directory names its federation, whose policy then decides the peers.
func claimDir(cfg *Config) (*os.File, string, error) {
	if err := prepareDir(cfg.Dir); err != nil {
		return nil, "", err
	}
	lock, err := lockDataDir(cfg.Dir)
	if err != nil {
		return nil, "", err
	}
	fed, err := FederationOf(cfg.Dir)
	if err == nil && fed != "" && cfg.PeersFile != "" {
		err = fmt.Errorf("node: %s belongs to federation %q, whose policy decides the peers; drop --peers", cfg.Dir, fed)
	}
	if err != nil {
		lock.Close()
		return nil, "", err
	}
	if fed != "" {
		cfg.Federation = fed
	}
	return lock, fed, nil
}

// prepareDir makes the data directory 0700, or checks an existing one:
// whoever can write it could replace the key or the sockets.
func prepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("node: data directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("node: data directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("node: data directory %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("node: data directory %s has mode %#o: others could replace its key or sockets; run: chmod 700 %s", dir, perm, dir)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// NodeKey makes the node key of dir if it has none and returns its public
// half, which peers files and invites name.
func NodeKey(dir string) (keys.NodePublic, error) {
	priv, _, err := keys.LoadOrCreateNodeKey(KeyPath(dir))
	if err != nil {
		return keys.NodePublic{}, err
	}
	defer priv.Zero()
	return priv.Public(), nil
}

// nameFile holds the node's name in the policy, written when the directory
// is founded or joined: a node started without --name takes it (a
// directory's base name, such as /var/lib/custos, says nothing).
const nameFile = "name"

func writeNodeName(dir, name string) error {
	if err := os.WriteFile(filepath.Join(dir, nameFile), []byte(name+"\n"), 0o600); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

// storedName is the name the directory was founded or joined as, or ""
// for a directory from before the name was kept.
func storedName(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, nameFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("node: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if err := validName(name); err != nil {
		return "", fmt.Errorf("node: %s: %w", filepath.Join(dir, nameFile), err)
	}
	return name, nil
}

// nameFromDir gives cfg the name its directory was founded or joined as;
// a different --name is refused, since the policy knows the node by the
// stored one.
func nameFromDir(cfg *Config, explicit bool) error {
	stored, err := storedName(cfg.Dir)
	if err != nil || stored == "" {
		return err
	}
	if explicit && cfg.Name != stored {
		return fmt.Errorf("node: %s is node %q of its federation; drop --name or give --name %s", cfg.Dir, stored, stored)
	}
	cfg.Name = stored
	return nil
}
