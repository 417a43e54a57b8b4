package join

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/policy"
)

// InfoFile records, on a joining node, whom to contact until the policy
// names its peers.
const InfoFile = "join.json"

// Info is what InfoFile holds.
type Info struct {
	Datacenters []TokenPeer `json:"datacenters"`
	Voters      []TokenPeer `json:"voters,omitempty"` // the token's other voters
	Role        string      `json:"role,omitempty"`   // what the invite made this node
	// Invite and Signer (the fingerprint of the key that signed the
	// token) are what the node checks against the policy once its
	// replica holds its own membership (see checkJoin); Checked records
	// that the check passed.
	Invite  string `json:"invite,omitempty"`
	Signer  string `json:"signer,omitempty"`
	Checked bool   `json:"checked,omitempty"`
}

// ReadInfo reads dir's join file (nil if the node did not join).
func ReadInfo(dir string) (*Info, error) {
	b, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var ji Info
	if err := json.Unmarshal(b, &ji); err != nil {
		return nil, fmt.Errorf("node: %s is damaged", filepath.Join(dir, InfoFile))
	}
	return &ji, nil
}

// writeInfo replaces the join file (temporary file, fsync, rename).
func writeInfo(dir string, ji *Info) error {
	b, err := json.Marshal(ji)
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, InfoFile, b)
}

// IsStoreJoin reports whether dir joined as a store: such a node records
// from its first start, before its replica names its role.
func IsStoreJoin(dir string) bool { return JoinedAs(dir) == policy.RoleStore }

// JoinedAs is the role this directory's node joined with, if it joined.
func JoinedAs(dir string) policy.NodeRole {
	ji, err := ReadInfo(dir)
	if err != nil || ji == nil {
		return ""
	}
	return policy.NodeRole(ji.Role)
}

// ReadSeed returns whom a node talks to until its policy replica names its
// peers: the peers it last had (LastPeersFile), else the datacenters and
// other voters its join token named. A restarted node's replica is empty
// until a leader tells it the commit index (Raft restores the state machine
// only from a snapshot and replays the log only once it knows what is
// committed); with no peers meanwhile it could reach no leader, and a
// founding datacenter, which has no token, would be cut off for good.
func ReadSeed(dir string) ([]mesh.Peer, error) {
	if last, err := readLastPeers(dir); err != nil {
		return nil, err
	} else if len(last) > 0 {
		return last, nil
	}
	return readTokenSeed(dir)
}

// LastPeersFile holds the mesh peers a node's policy last gave it.
const LastPeersFile = "last-peers.json"

type lastPeer struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Endpoint  string `json:"endpoint,omitempty"`
}

func readLastPeers(dir string) ([]mesh.Peer, error) {
	b, err := os.ReadFile(filepath.Join(dir, LastPeersFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var list []lastPeer
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("node: %s is damaged (delete it; the node then starts from its join token)", LastPeersFile)
	}
	var out []mesh.Peer
	for _, p := range list {
		pub, err := keys.ParseNodePublic(p.PublicKey)
		if err != nil {
			continue
		}
		ep, _ := netip.ParseAddrPort(p.Endpoint)
		out = append(out, mesh.Peer{Name: p.Name, PublicKey: pub, Endpoint: ep})
	}
	return out, nil
}

// WriteLastPeers records peers (temporary file, fsync, rename) when they
// differ from what the file holds.
func WriteLastPeers(dir string, peers []mesh.Peer) error {
	list := make([]lastPeer, 0, len(peers))
	for _, p := range peers {
		lp := lastPeer{Name: p.Name, PublicKey: p.PublicKey.String()}
		if p.Endpoint.IsValid() {
			lp.Endpoint = p.Endpoint.String()
		}
		list = append(list, lp)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(filepath.Join(dir, LastPeersFile)); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return writeFileAtomic(dir, LastPeersFile, b)
}

// writeFileAtomic replaces dir/name with b, mode 0600: temporary file,
// fsync, rename, so a crash leaves the old file or the new, never half.
func writeFileAtomic(dir, name string, b []byte) error {
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}

// readTokenSeed returns the datacenters and other voters a joined node's
// token named.
func readTokenSeed(dir string) ([]mesh.Peer, error) {
	ji, err := ReadInfo(dir)
	if err != nil || ji == nil {
		return nil, err
	}
	var out []mesh.Peer
	for _, p := range append(ji.Datacenters, ji.Voters...) {
		pub, err := keys.ParseNodePublic(p.PublicKey)
		if err != nil {
			continue
		}
		ep, _ := netip.ParseAddrPort(p.Endpoint)
		out = append(out, mesh.Peer{Name: p.Name, PublicKey: pub, Endpoint: ep})
	}
	return out, nil
}

// ErrRefused is wrapped when a joined node found its token's signer
// not to check out against the policy.
var ErrRefused = errors.New("join refused and undone")

// RefusedFile marks a directory whose join was undone, with the
// reason; the node's readAnchor refuses such a directory.
const RefusedFile = "join-refused.json"

type refusal struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// WasRefused returns ErrRefused, with the reason, for a directory
// whose join was undone.
func WasRefused(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, RefusedFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	var r refusal
	if json.Unmarshal(b, &r) != nil || r.Reason == "" {
		r.Reason = "(reason unreadable)"
	}
	return fmt.Errorf("node: %s: %w: %s. The directory belongs to no federation; join again, in an empty directory, with a token an admin of the federation made", dir, ErrRefused, r.Reason)
}
