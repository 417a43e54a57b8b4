package replication

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/store/s3blob"
	"github.com/custos-cctv/custos/media/store/s3blob/s3test"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/rpc"
	"github.com/custos-cctv/custos/policy/audit"
)

// A datacenter's replicas in an S3 bucket (real SeaweedFS, s3test; these
// tests skip without CUSTOS_WEED), through the puller's own path: the
// cursor from the replica's index (pullRequest), the store's answer
// (serve), the custody checks and the store's Put (apply).

// s3Pair is a store holding sealed footage of praha-1/entrance and a
// datacenter keeping its replica in a bucket.
type s3Pair struct {
	f      *nodetest.Custody
	src    *Source
	media  *store.Store // the store's own, on disk
	mdir   string
	prev   keys.SegmentLink
	seq    uint64
	size   int // bytes of ciphertext per segment
	dcDir  string
	cfg    s3blob.Config
	count  *s3test.Counter
	tr     *testReplica
	srv    *s3test.Server
	bucket string
}

func newS3Pair(t testing.TB, srv *s3test.Server, endpoint string, size int) *s3Pair {
	t.Helper()
	f := nodetest.NewCustody(t)
	dir := t.TempDir()
	j, err := audit.Open(filepath.Join(dir, "audit"), audit.Options{Node: "store"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	mdir := filepath.Join(dir, "media")
	media, err := store.Open(mdir, store.Options{MinFree: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { media.Close() })
	logged := new([]string)
	src := NewSource(Config{}, SourceDeps{Deps: testDeps(t, "store", f.St, j, logged), Media: func() *store.Store { return media }, Journal: j})
	if err := media.PutEpoch(f.Rec.Camera, f.Rec.Start, f.Rec.End, f.Sealed); err != nil {
		t.Fatal(err)
	}
	bucket := fmt.Sprintf("custos-%d", time.Now().UnixNano()%1e9)
	srv.MakeBucket(t, bucket)
	p := &s3Pair{f: f, src: src, media: media, mdir: mdir, size: size, dcDir: t.TempDir(), srv: srv, bucket: bucket}
	p.cfg = srv.Config(bucket, "dc-a/", endpoint)
	p.openDC(t)
	return p
}

// openDC (re)starts the datacenter's replica on the bucket, with a fresh
// request counter.
func (p *s3Pair) openDC(t testing.TB) {
	t.Helper()
	if p.tr != nil {
		p.tr.st.Close()
		p.tr.dj.Close()
	}
	p.count = &s3test.Counter{}
	if p.tr != nil {
		// The last client's connections go with it.
		s3test.Transport().(interface{ CloseIdleConnections() }).CloseIdleConnections()
	}
	cfg := p.cfg
	cfg.Transport = p.count
	b, err := s3blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.tr = newTestReplicaWith(t, p.f.St, p.dcDir, store.Options{MinFree: -1, Blobs: b, BlobTimeout: 20 * time.Second})
}

// record seals and stores n more segments on the store.
func (p *s3Pair) record(t testing.TB, n int) {
	t.Helper()
	for range n {
		start := p.f.Rec.Start.Add(time.Second)
		if p.seq > 0 {
			start = p.prev.End
		}
		ct := make([]byte, p.size)
		rand.Read(ct)
		b, l, err := keys.SealSegment(p.f.Signer, keys.SegmentLink{Camera: p.f.Rec.Camera, EpochStart: p.f.Rec.Start, EpochHash: epochHash(t, p.f),
			Seq: p.seq, Start: start, End: start.Add(4 * time.Second), Prev: p.prevHash()}, ct)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.media.Put(store.SegmentMeta{Camera: p.f.Rec.Camera, Start: l.Start, End: l.End, EpochStart: p.f.Rec.Start}, b); err != nil {
			t.Fatal(err)
		}
		p.prev, p.seq = l, p.seq+1
	}
}

func (p *s3Pair) prevHash() [32]byte {
	if p.seq == 0 {
		return [32]byte{}
	}
	return p.prev.Hash()
}

func epochHash(t testing.TB, f *nodetest.Custody) [32]byte {
	e, err := keys.ParseSealedEpoch(f.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	return e.RecordHash
}

// pull is one pull of the datacenter's puller without the mesh: its
// request (the cursor from the replica's index) acknowledged at the
// store, the store's answer, each item applied in order, the segments
// read as replicate-get reads them. It returns the items offered.
func (p *s3Pair) pull(t testing.TB) (int, error) {
	t.Helper()
	r, pl := p.tr.r, p.tr.p
	q, err := r.pullRequest(pl)
	if err != nil {
		return 0, err
	}
	p.src.ack("dc-a", "praha-1", q.Cameras)
	var w recorded
	if _, err := p.src.serve(context.Background(), "praha-1", q, &w); err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := 0; i < len(w); i++ {
		var h replItem
		if err := rpc.DecodeStrict(w[i], &h); err != nil {
			t.Fatal(err)
		}
		var payload []byte
		if h.Kind == "segment" {
			sum, _ := hex.DecodeString(h.SHA256)
			payload, err = p.media.ReadSegment(store.SegmentMeta{Camera: h.Camera, Start: h.Start, SHA256: [32]byte(sum)})
			if err != nil {
				t.Fatal(err)
			}
		} else {
			i++
			payload = w[i]
		}
		n++
		if err := r.apply(pl, h, payload); err != nil {
			pl.err = err.Error()
			r.noteStorage()
			return n, err
		}
	}
	pl.err = ""
	r.noteStorage()
	return n, nil
}

// catchUp pulls until a pull offers nothing.
func (p *s3Pair) catchUp(t testing.TB) {
	t.Helper()
	for range 1000 {
		n, err := p.pull(t)
		if err != nil {
			t.Fatalf("pull: %v", err)
		}
		if n == 0 {
			return
		}
	}
	t.Fatal("the replica never caught up")
}

// acked is what the store believes dc-a holds of the camera.
func (p *s3Pair) acked() replCursor {
	p.src.mu.Lock()
	defer p.src.mu.Unlock()
	return p.src.acks["dc-a"][p.f.Rec.Camera]
}

// same checks the bucket holds exactly the store's files, byte for byte
// under the same relative names, and the replica's index their SHA-256.
func (p *s3Pair) same(t testing.TB) {
	t.Helper()
	want := map[string][]byte{}
	filepath.WalkDir(p.mdir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && (strings.HasSuffix(path, ".seg") || strings.HasSuffix(path, ".epoch")) {
			b, _ := os.ReadFile(path)
			rel, _ := filepath.Rel(p.mdir, path)
			want[filepath.ToSlash(rel)] = b
		}
		return nil
	})
	got := p.srv.Objects(t, p.bucket, "dc-a/")
	if len(got) != len(want) {
		t.Errorf("the bucket holds %d objects, the store %d files", len(got), len(want))
	}
	for rel, b := range want {
		if _, ok := got["dc-a/"+rel]; !ok {
			t.Errorf("%s is not in the bucket", rel)
			continue
		}
		if ob := p.srv.Get(t, p.bucket, "dc-a/"+rel); !bytes.Equal(ob, b) {
			t.Errorf("%s: the object is not the store's file byte for byte", rel)
		}
	}
	src, _ := p.media.Segments(p.f.Rec.Camera, p.f.Rec.Start, p.f.Rec.End)
	rep, err := p.tr.st.Segments(p.f.Rec.Camera, p.f.Rec.Start, p.f.Rec.End)
	if err != nil || len(rep) != len(src) {
		t.Fatalf("the replica indexes %d segments (%v), the store %d", len(rep), err, len(src))
	}
	for i := range src {
		if rep[i].SHA256 != src[i].SHA256 || rep[i].Size != src[i].Size {
			t.Errorf("segment %d: index %x, store %x", i, rep[i].SHA256, src[i].SHA256)
		}
		if b, err := p.tr.st.ReadSegment(rep[i]); err != nil || sha256.Sum256(b) != src[i].SHA256 {
			t.Errorf("reading segment %d back: %v", i, err)
		}
	}
}

// The replica in a bucket is the store's footage byte for byte; a
// restart of the datacenter uploads nothing again and loses nothing, and
// goes on from its cursor.
func TestReplicaOnS3(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	p := newS3Pair(t, srv, "", 64<<10)
	p.record(t, 12)
	p.catchUp(t)
	p.same(t)
	if n := p.count.Puts(); n != 13 {
		t.Errorf("%d uploads for 12 segments and an epoch record", n)
	}
	if c := p.acked(); !c.Segment.Equal(p.prev.Start) {
		t.Errorf("the store's ack %v, want the newest segment %v", c.Segment, p.prev.Start)
	}

	p.openDC(t)
	p.catchUp(t)
	if n := p.count.Puts(); n != 0 {
		t.Errorf("the restarted datacenter uploaded %d objects again", n)
	}
	p.record(t, 3)
	p.catchUp(t)
	if n := p.count.Puts(); n != 3 {
		t.Errorf("the restarted datacenter uploaded %d objects for 3 new segments", n)
	}
	p.same(t)
}

// The bucket's server stops: the pull fails, the alarm is raised (status,
// log, journal), nothing is indexed or acknowledged past what the bucket
// holds; when it is back, the replica catches up and the alarm clears.
// A full bucket does the same with the full alarm.
func TestReplicaOnS3Outage(t *testing.T) {
	const secret = "s3cr3t-of-dc-a-7d2c"
	srv := s3test.Start(t, s3test.Options{Identity: &s3test.Identity{AccessKey: "dc-a", SecretKey: secret}})
	proxy := s3test.NewProxy(t, srv.Endpoint)
	p := newS3Pair(t, srv, proxy.Endpoint, 16<<10)
	p.record(t, 4)
	p.catchUp(t)
	held := p.prev.Start

	for _, fault := range []string{"stopped", "full", "quota"} {
		switch fault {
		case "stopped":
			srv.Stop()
		case "full":
			proxy.SetFull("InsufficientStorage")
		case "quota":
			proxy.SetFull("QuotaExceeded")
		}
		p.record(t, 2)
		for range 2 {
			if _, err := p.pull(t); err == nil {
				t.Fatalf("%s: a pull succeeded", fault)
			}
		}
		q, err := p.tr.r.pullRequest(p.tr.p)
		if err != nil {
			t.Fatal(err)
		}
		if c := q.Cameras[p.f.Rec.Camera]; !c.Segment.Equal(held) {
			t.Errorf("%s: the cursor moved to %v, want %v (what the bucket holds)", fault, c.Segment, held)
		}
		if c := p.acked(); !c.Segment.Equal(held) {
			t.Errorf("%s: the store was told %v is held, want %v", fault, c.Segment, held)
		}
		h := p.tr.r.Health()
		if fault == "stopped" && !h.Unavailable || fault != "stopped" && !h.DiskFull {
			t.Errorf("%s: health %+v", fault, h)
		}
		st := p.tr.r.Status()
		if len(st) != 1 || st[0].Error == "" {
			t.Errorf("%s: the replica's status shows no error: %+v", fault, st)
		}
		logs := strings.Join(*p.tr.logged, "\n")
		if !strings.Contains(logs, "REPLICA STORAGE ALARM") {
			t.Errorf("%s: no alarm logged: %s", fault, logs)
		}
		for _, s := range []string{logs, h.Alarm(), fmt.Sprintf("%+v", h), fmt.Sprintf("%+v", st)} {
			if strings.Contains(s, secret) {
				t.Errorf("%s: the secret key shows: %s", fault, s)
			}
		}

		switch fault {
		case "stopped":
			srv.Restart(t)
		default:
			proxy.SetFull("")
		}
		p.catchUp(t)
		held = p.prev.Start
		if c := p.acked(); !c.Segment.Equal(held) {
			t.Errorf("%s: after the fault the store's ack is %v, want %v", fault, c.Segment, held)
		}
		if h := p.tr.r.Health(); h.Alarm() != "" {
			t.Errorf("%s: the alarm did not clear: %+v", fault, h)
		}
		if !strings.Contains((*p.tr.logged)[len(*p.tr.logged)-1], "alarm cleared") {
			t.Errorf("%s: the clearing was not logged: %q", fault, *p.tr.logged)
		}
	}
	p.same(t)
	es, _ := p.tr.dj.Since(time.Time{})
	var raised, cleared int
	for _, e := range es {
		if e.Action == "replica-storage" {
			if e.Decision == audit.Deny {
				raised++
			} else {
				cleared++
			}
		}
	}
	if raised != 3 || cleared != 3 {
		t.Errorf("storage alarm audited raised %d, cleared %d times; want 3 each", raised, cleared)
	}
}

// A slow endpoint (every request delayed at a proxy) changes nothing but
// the time: every segment once, none lost, none uploaded twice.
func TestReplicaOnS3Slow(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	proxy := s3test.NewProxy(t, srv.Endpoint)
	proxy.SetDelay(40 * time.Millisecond)
	p := newS3Pair(t, srv, proxy.Endpoint, 32<<10)
	p.record(t, 10)
	p.catchUp(t)
	p.record(t, 5)
	p.catchUp(t)
	if n := p.count.Puts(); n != 16 {
		t.Errorf("%d uploads for 15 segments and an epoch record", n)
	}
	p.same(t)
}

// BenchmarkReplicaCatchUp: a store's backlog (CUSTOS_BACKLOG_SEGMENTS
// segments of 512 KiB, default 120) caught up by the datacenter's
// puller path (custody checks and the store's Put) into its replica on
// the local disk (/disk) or in a SeaweedFS bucket on loopback (/s3).
// MB/s of ciphertext stored; the mesh is not in it (ReplicationCatchUp in
// node measures that).
func BenchmarkReplicaCatchUp(b *testing.B) {
	n := 120
	if v := os.Getenv("CUSTOS_BACKLOG_SEGMENTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	run := func(b *testing.B, open func(b *testing.B) *s3Pair) {
		var took time.Duration
		var bytes int64
		for b.Loop() {
			b.StopTimer()
			p := open(b)
			p.record(b, n)
			st, _ := p.media.Stats(p.f.Rec.Camera)
			b.StartTimer()
			began := time.Now()
			p.catchUp(b)
			took += time.Since(began)
			bytes += st.Bytes
		}
		b.ReportMetric(float64(bytes)/1e6/took.Seconds(), "MB/s")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("disk", func(b *testing.B) {
		run(b, func(b *testing.B) *s3Pair {
			p := &s3Pair{size: 512 << 10}
			p.f = nodetest.NewCustody(b)
			dir := b.TempDir()
			j, err := audit.Open(filepath.Join(dir, "audit"), audit.Options{Node: "store"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { j.Close() })
			p.mdir = filepath.Join(dir, "media")
			if p.media, err = store.Open(p.mdir, store.Options{MinFree: -1}); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.media.Close() })
			p.src = NewSource(Config{}, SourceDeps{Deps: testDeps(b, "store", p.f.St, j, new([]string)), Media: func() *store.Store { return p.media }, Journal: j})
			if err := p.media.PutEpoch(p.f.Rec.Camera, p.f.Rec.Start, p.f.Rec.End, p.f.Sealed); err != nil {
				b.Fatal(err)
			}
			p.tr = newTestReplicaWith(b, p.f.St, b.TempDir(), store.Options{MinFree: -1})
			return p
		})
	})
	b.Run("s3", func(b *testing.B) {
		srv := s3test.Start(b, s3test.Options{})
		run(b, func(b *testing.B) *s3Pair { return newS3Pair(b, srv, "", 512<<10) })
	})
}
