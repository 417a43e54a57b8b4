package replication

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// testReplica is a datacenter's replica side without a mesh: its journal,
// media store and policy, and a puller of store "store" of praha-1.
type testReplica struct {
	r      *Replicas
	p      *puller
	ar     *auditReplica
	dj     *audit.Journal
	st     *store.Store
	logged *[]string
}

func newTestReplica(t *testing.T, pst *policy.State) *testReplica {
	t.Helper()
	return newTestReplicaWith(t, pst, t.TempDir(), store.Options{MinFree: -1})
}

// newTestReplicaWith is newTestReplica in dir with the media store opened
// with opts (a blob store).
func newTestReplicaWith(t testing.TB, pst *policy.State, dir string, opts store.Options) *testReplica {
	t.Helper()
	dj, err := audit.Open(dir, audit.Options{Node: "dc-a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dj.Close() })
	st, err := store.Open(filepath.Join(dir, "media"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logged := new([]string)
	r := &Replicas{d: ReplicaDeps{Deps: testDeps(t, "dc-a", pst, dj, logged)}, st: st, pullers: map[string]*puller{}}
	ar, err := openAuditReplica(filepath.Join(dir, "replicas", "audit"), "store")
	if err != nil {
		t.Fatal(err)
	}
	p := &puller{store: "store", site: "praha-1", audit: ar}
	r.pullers["store"] = p
	return &testReplica{r: r, p: p, ar: ar, dj: dj, st: st, logged: logged}
}

// staticPolicy is the node's policy, frozen.
type staticPolicy struct{ st *policy.State }

func (p staticPolicy) State() *policy.State { return p.st }

// testDeps is a node named name under policy st: it audits into j and
// logs into logged; it finds itself in the policy by name.
func testDeps(t testing.TB, name string, st *policy.State, j *audit.Journal, logged *[]string) Deps {
	return Deps{
		Name:   name,
		Policy: staticPolicy{st},
		Self:   func(*policy.State) string { return name },
		Audit: func(e audit.Event) {
			if _, err := j.Append(e); err != nil {
				t.Errorf("audit %s %s: %v", e.Action, e.Object, err)
			}
		},
		Logf: func(format string, a ...any) { *logged = append(*logged, fmt.Sprintf(format, a...)) },
	}
}
