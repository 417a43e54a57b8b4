package e2e

// The soak's model of the policy for porcupine (netns_soak_test.go): every
// object the workload touches — a grant ID or a site name — is a small
// state machine, and a history is checked object by object.
//
// Per-object checking is sound for the writes (each touches one object, and
// linearizability is local: a history of single-object operations is
// linearizable iff each object's subhistory is). A read returns the whole
// policy; it is projected onto each object, which checks every object's
// value in the read but not that one read saw all objects at the same
// instant.

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Object states. A revoked grant keeps its entry, so its ID cannot be
// granted again (policy: "grant exists"), and revoking it again is refused
// ("no active grant").
const (
	objAbsent  = 0
	objActive  = 1 // a grant not revoked, or a site
	objRevoked = 2
)

// Operation kinds and outcomes as recorded.
const (
	opGrantAdd    = "grant.add"
	opGrantRevoke = "grant.revoke"
	opSiteAdd     = "site.add"
	opRead        = "read"

	outOK      = "ok"      // exit 0: applied
	outRefused = "refused" // exit 4 with the refusal the model predicts ("exists", "no active grant")
	outOther   = "other"   // exit 4 for another reason: the policy did not apply it
	outUnknown = "unknown" // no answer, or an error that does not say: maybe applied
)

// soakOp is one client call in the history, as written to history.json.
type soakOp struct {
	Client int    `json:"client"`
	Kind   string `json:"kind"`
	Key    string `json:"key,omitempty"` // "grant:ID" or "site:NAME"; empty for reads
	Via    string `json:"via"`
	Call   int64  `json:"call_ns"`   // since the run began
	Return int64  `json:"return_ns"` // since the run began; math.MaxInt64 when unknown
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
	// Read is, for a read, the state of every object of the soak it saw.
	Read map[string]int `json:"read,omitempty"`
}

// modelInput and modelOutput are one projected operation.
type modelInput struct{ kind, key string }
type modelOutput struct {
	result string
	state  int // for reads
}

// soakModel checks one object's subhistory (states are ints).
var soakModel = porcupine.Model{
	Partition: nil, // done by soakPartitions, which projects reads
	Init:      func() any { return objAbsent },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(int), input.(modelInput), output.(modelOutput)
		next, refusal := s, ""
		switch in.kind {
		case opGrantAdd, opSiteAdd:
			if s == objAbsent {
				next = objActive
			} else {
				refusal = "exists"
			}
		case opGrantRevoke:
			if s == objActive {
				next = objRevoked
			} else {
				refusal = "no active grant"
			}
		case opRead:
			return out.state == s, s
		}
		switch out.result {
		case outOK:
			return refusal == "", next
		case outRefused:
			return refusal != "", s
		case outOther:
			return true, s // refused for a reason of its own: not applied
		default: // unknown: it took effect if it could, or it never reached the log
			return true, next
		}
	},
	Equal: func(a, b any) bool { return a == b },
	DescribeOperation: func(input, output any) string {
		in, out := input.(modelInput), output.(modelOutput)
		if in.kind == opRead {
			return fmt.Sprintf("read %s -> %s", in.key, stateName(out.state))
		}
		return fmt.Sprintf("%s %s -> %s", in.kind, in.key, out.result)
	},
	DescribeState: func(s any) string { return stateName(s.(int)) },
}

func stateName(s int) string {
	switch s {
	case objAbsent:
		return "absent"
	case objActive:
		return "active"
	case objRevoked:
		return "revoked"
	}
	return fmt.Sprint(s)
}

// soakPartitions turns the history into one porcupine history per object:
// its writes, and every read projected onto it. An unknown write may take
// effect at any time after its call: its return is the end of time.
func soakPartitions(history []soakOp) (keys []string, parts [][]porcupine.Operation) {
	seen := map[string]bool{}
	for _, op := range history {
		if op.Kind != opRead && !seen[op.Key] {
			seen[op.Key] = true
			keys = append(keys, op.Key)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		var ops []porcupine.Operation
		for _, op := range history {
			ret := op.Return
			if op.Result == outUnknown {
				ret = math.MaxInt64
			}
			switch {
			case op.Kind == opRead:
				ops = append(ops, porcupine.Operation{ClientId: op.Client, Input: modelInput{opRead, k},
					Call: op.Call, Return: ret, Output: modelOutput{result: outOK, state: op.Read[k]}})
			case op.Key == k:
				ops = append(ops, porcupine.Operation{ClientId: op.Client, Input: modelInput{op.Kind, k},
					Call: op.Call, Return: ret, Output: modelOutput{result: op.Result}})
			}
		}
		parts = append(parts, ops)
	}
	return keys, parts
}

// checkSoakHistory checks each object's subhistory; it returns the objects
// whose history is not linearizable and those porcupine gave up on.
func checkSoakHistory(history []soakOp, timeout time.Duration) (bad, undecided []string) {
	keys, parts := soakPartitions(history)
	for i, ops := range parts {
		switch porcupine.CheckOperationsTimeout(soakModel, ops, timeout) {
		case porcupine.Illegal:
			bad = append(bad, keys[i])
		case porcupine.Unknown:
			undecided = append(undecided, keys[i])
		}
	}
	return bad, undecided
}

// describeObject is one object's subhistory, in call order, for a report.
func describeObject(history []soakOp, key string) string {
	var lines []string
	for _, op := range history {
		switch {
		case op.Kind == opRead:
			lines = append(lines, fmt.Sprintf("  [%8.3fs–%8.3fs] c%d read via %s: %s", float64(op.Call)/1e9, float64(op.Return)/1e9, op.Client, op.Via, stateName(op.Read[key])))
		case op.Key == key:
			ret := "      ∞"
			if op.Return != math.MaxInt64 {
				ret = fmt.Sprintf("%8.3fs", float64(op.Return)/1e9)
			}
			lines = append(lines, fmt.Sprintf("  [%8.3fs–%s] c%d %s via %s: %s %s", float64(op.Call)/1e9, ret, op.Client, op.Kind, op.Via, op.Result, op.Reason))
		}
	}
	return strings.Join(lines, "\n")
}

// TestSoakModel feeds the checker histories whose verdict is known, so the
// soak's linearizability check is seen to be able to fail.
func TestSoakModel(t *testing.T) {
	const g = "grant:g-1"
	s := time.Second.Nanoseconds()
	op := func(client int, kind string, call, ret int64, result string) soakOp {
		return soakOp{Client: client, Kind: kind, Key: g, Call: call * s, Return: ret * s, Result: result}
	}
	read := func(client int, call, ret int64, state int) soakOp {
		return soakOp{Client: client, Kind: opRead, Call: call * s, Return: ret * s, Result: outOK, Read: map[string]int{g: state}}
	}
	unknown := func(o soakOp) soakOp { o.Result = outUnknown; o.Return = math.MaxInt64; return o }
	cases := []struct {
		name    string
		history []soakOp
		ok      bool
	}{
		{"add then revoke then read", []soakOp{op(0, opGrantAdd, 0, 1, outOK), op(1, opGrantRevoke, 2, 3, outOK), read(0, 4, 5, objRevoked)}, true},
		{"concurrent adds, one refused", []soakOp{op(0, opGrantAdd, 0, 3, outOK), op(1, opGrantAdd, 1, 2, outRefused)}, true},
		{"both concurrent adds applied", []soakOp{op(0, opGrantAdd, 0, 3, outOK), op(1, opGrantAdd, 1, 2, outOK)}, false},
		{"acknowledged add lost", []soakOp{op(0, opGrantAdd, 0, 1, outOK), read(1, 2, 3, objAbsent)}, false},
		{"stale read after revoke", []soakOp{op(0, opGrantAdd, 0, 1, outOK), op(0, opGrantRevoke, 2, 3, outOK), read(1, 4, 5, objActive)}, false},
		{"read overlapping the add may miss it", []soakOp{op(0, opGrantAdd, 0, 3, outOK), read(1, 1, 2, objAbsent)}, true},
		{"revoke of an absent grant refused", []soakOp{op(0, opGrantRevoke, 0, 1, outRefused)}, true},
		{"revoke of an absent grant applied", []soakOp{op(0, opGrantRevoke, 0, 1, outOK)}, false},
		{"unknown add seen later", []soakOp{unknown(op(0, opGrantAdd, 0, 1, "")), read(1, 5, 6, objActive)}, true},
		{"unknown add never applied", []soakOp{unknown(op(0, opGrantAdd, 0, 1, "")), read(1, 5, 6, objAbsent)}, true},
		{"unknown add cannot precede its call", []soakOp{read(1, 0, 1, objActive), unknown(op(0, opGrantAdd, 2, 3, ""))}, false},
		{"applied, then seen absent, then present (flicker)", []soakOp{unknown(op(0, opGrantAdd, 0, 1, "")), read(1, 2, 3, objActive), read(1, 4, 5, objAbsent)}, false},
		{"refused for another reason is not applied", []soakOp{op(0, opGrantAdd, 0, 1, outOther), read(1, 2, 3, objActive)}, false},
	}
	for _, c := range cases {
		bad, undecided := checkSoakHistory(c.history, 10*time.Second)
		if len(undecided) > 0 {
			t.Errorf("%s: porcupine undecided", c.name)
		}
		if got := len(bad) == 0; got != c.ok {
			t.Errorf("%s: linearizable %v, want %v\n%s", c.name, got, c.ok, describeObject(c.history, g))
		}
	}
}

// A split excuses a check only for names it put on different sides.
func TestSoakSplitApart(t *testing.T) {
	detail := "{dc-a,store-praha-1} | {dc-b,witness,desk} for 12s"
	for _, c := range []struct {
		names []string
		want  string
	}{
		{[]string{"desk", "store-praha-1"}, "store-praha-1|desk"},
		{[]string{"dc-b", "desk"}, ""},
		{[]string{"dc-a", "store-praha-1"}, ""},
		{[]string{"inst-1"}, ""},
	} {
		if got := splitApart(detail, c.names); got != c.want {
			t.Errorf("splitApart(%v) = %q, want %q", c.names, got, c.want)
		}
	}
	if got := splitApart("rules removed", []string{"dc-a", "dc-b"}); got != "" {
		t.Errorf("a detail without sides: %q", got)
	}
}
