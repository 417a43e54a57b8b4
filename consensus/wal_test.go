package consensus

import (
	"errors"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/metadb"
)

// TestLogReopensAfterTailTruncation is a follower that clears a suffix of
// its log (raft's "clearing log suffix", after a leader change) and is then
// restarted: the log must open and serve every entry it kept. raft-wal
// before v0.4.1 marked the truncated tail segment sealed without writing its
// index block, and the next start panicked in raft.NewRaft ("sealed segment
// has no index block"); the soak met it on a datacenter killed after a
// partition.
func TestLogReopensAfterTailTruncation(t *testing.T) {
	dir := t.TempDir()
	open := func() (*metadb.BoltMetaDB, raft.LogStore, func()) {
		meta := &metadb.BoltMetaDB{}
		log, err := openLog(dir, meta, hclog.NewNullLogger())
		if err != nil {
			t.Fatalf("open the log: %v", err)
		}
		return meta, log, func() {
			if err := errors.Join(log.Close(), meta.Close()); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, log, closeLog := open()
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	if err := log.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := log.DeleteRange(8, 10); err != nil {
		t.Fatalf("clear the suffix 8–10: %v", err)
	}
	// The new leader's entries after the cut.
	if err := log.StoreLogs([]*raft.Log{{Index: 8, Term: 2, Type: raft.LogCommand, Data: []byte{80}}}); err != nil {
		t.Fatal(err)
	}
	closeLog()

	_, log, closeLog = open()
	defer closeLog()
	last, err := log.LastIndex()
	if err != nil || last != 8 {
		t.Fatalf("last index after reopening %d (%v), want 8", last, err)
	}
	for i := uint64(1); i <= 8; i++ {
		var l raft.Log
		if err := log.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d after reopening: %v", i, err)
		}
		want := byte(i)
		if i == 8 {
			want = 80
		}
		if len(l.Data) != 1 || l.Data[0] != want {
			t.Errorf("entry %d holds %v, want [%d]", i, l.Data, want)
		}
	}
}
