package node

// Versions across a federation, for rolling upgrades (policy/protocol.go
// says what a protocol is). Each node answers op "version" with its
// release and the policy protocol it speaks; `custos members` shows them,
// and the leader asks before a command of a newer protocol enters the log:
// it commits one only when every member of the Raft configuration has
// answered that it knows it. An unreachable member keeps the gate shut:
// committing a command some replica cannot apply would stop that replica.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy"
)

// opVersion answers a member with this node's release and protocol.
const opVersion = "version"

// versionAsk bounds one member's answer; versionKeep is how long the
// leader trusts a member's "I know protocol N" (a node may be rolled back).
const (
	versionAsk  = 3 * time.Second
	versionKeep = time.Minute
	versionFan  = 32 // members asked at once
)

// NodeVersion is what a node says of itself.
type NodeVersion struct {
	Node     string `json:"node"`
	Version  string `json:"version,omitempty"`
	Protocol int    `json:"protocol,omitempty"`
	// Error says why the node did not answer ("" when it did).
	Error string `json:"error,omitempty"`
}

type versionAnswer struct {
	Version  string `json:"version"`
	Protocol int    `json:"protocol"`
}

func (n *Node) handleVersion(ctx context.Context, peer keys.NodePublic, body []byte, w *rpc.Writer) error {
	st := n.policy.State()
	if name := st.NameOfKey(peer.String()); name == "" || !policy.Member(st, name, n.now()) {
		return rpc.Deny("you are not a live member of the federation")
	}
	a := versionAnswer{Version: Version, Protocol: policy.Protocol}
	if p := n.protocolSaid.Load(); p != 0 {
		a.Protocol = int(p)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return w.WriteFrame(b)
}

// askVersion asks one member.
func (n *Node) askVersion(ctx context.Context, st *policy.State, name string) NodeVersion {
	if name == n.selfName(st) {
		return NodeVersion{Node: name, Version: Version, Protocol: policy.Protocol}
	}
	ctx, cancel := context.WithTimeout(ctx, versionAsk)
	defer cancel()
	out := NodeVersion{Node: name}
	rd, conn, err := n.callNode(ctx, st, name, opVersion, nil)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	defer conn.Close()
	defer rd.Close()
	b, err := rd.Next()
	var a versionAnswer
	if err == nil {
		err = rpc.DecodeStrict(b, &a)
	}
	if err == nil && (a.Protocol < 1 || len(a.Version) > 128) {
		err = fmt.Errorf("protocol %d, version of %d bytes", a.Protocol, len(a.Version))
	}
	if err != nil {
		out.Error = "its answer: " + err.Error()
		return out
	}
	out.Version, out.Protocol = a.Version, a.Protocol
	return out
}

// Versions asks each named node, at most versionFan at once, in name order.
func (n *Node) Versions(ctx context.Context, names []string) []NodeVersion {
	st := n.policy.State()
	out := make([]NodeVersion, len(names))
	sem := make(chan struct{}, versionFan)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = n.askVersion(ctx, st, name)
		})
	}
	wg.Wait()
	return out
}

// protocolGate is the leader's check of a command that needs protocol
// need: every member of the Raft configuration must have said it knows it.
type protocolGate struct {
	mu    sync.Mutex
	known map[string]knownVersion // by node name
}

type knownVersion struct {
	protocol int
	at       time.Time
}

func (n *Node) checkGate(kind string, need int) error {
	if n.raft == nil {
		return nil
	}
	// Raft knows its servers by node key; the policy names them. A server
	// the policy does not name cannot be asked, and keeps the gate shut.
	st := n.policy.State()
	var ask, behind []string
	now := time.Now()
	n.gate.mu.Lock()
	for _, m := range n.raft.Status().Members {
		name := st.NameOfKey(m.ID)
		if name == "" {
			behind = append(behind, fmt.Sprintf("Raft member %s is no node of the policy", m.ID))
			continue
		}
		if k, ok := n.gate.known[name]; ok && k.protocol >= need && now.Sub(k.at) < versionKeep {
			continue
		}
		ask = append(ask, name)
	}
	n.gate.mu.Unlock()
	if len(ask)+len(behind) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), versionAsk+time.Second)
	defer cancel()
	for _, v := range n.Versions(ctx, ask) {
		switch {
		case v.Error != "":
			behind = append(behind, fmt.Sprintf("%s did not answer (%s)", v.Node, v.Error))
		case v.Protocol < need:
			behind = append(behind, fmt.Sprintf("%s runs %s (protocol %d)", v.Node, v.Version, v.Protocol))
		default:
			n.gate.mu.Lock()
			if n.gate.known == nil {
				n.gate.known = map[string]knownVersion{}
			}
			n.gate.known[v.Node] = knownVersion{protocol: v.Protocol, at: now}
			n.gate.mu.Unlock()
		}
	}
	if len(behind) == 0 {
		return nil
	}
	slices.Sort(behind)
	return fmt.Errorf("a %s command needs protocol %d, which not every member knows yet: %s; upgrade them first (nothing was applied)",
		kind, need, strings.Join(behind, "; "))
}

// apiVersions serves GET /v1/versions: every node of the policy, asked now.
func (n *Node) apiVersions(w http.ResponseWriter, r *http.Request) {
	if n.policy == nil {
		http.Error(w, "this node runs from a static peers file, not a replicated policy", http.StatusBadRequest)
		return
	}
	st := n.policy.State()
	var names []string
	for name := range st.Nodes {
		if policy.Member(st, name, n.now()) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	writeJSON(w, n.Versions(r.Context(), names))
}

// FetchVersions asks the node running in dir for every live member's
// release and protocol.
func FetchVersions(ctx context.Context, dir string) ([]NodeVersion, error) {
	var out []NodeVersion
	if err := apiDo(ctx, dir, "GET", "/v1/versions", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}
