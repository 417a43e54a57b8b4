package s3blob_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/store"
	"github.com/custos-cctv/custos/media/store/s3blob"
	"github.com/custos-cctv/custos/media/store/s3blob/s3test"
)

// These tests run against a real SeaweedFS (s3test); they skip without
// CUSTOS_WEED.

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

const cam = "praha-1/entrance"

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// fixture is a store whose files live in a bucket of a weed server.
type fixture struct {
	srv    *s3test.Server
	bucket string
	prefix string
	cfg    s3blob.Config
	count  *s3test.Counter
	dir    string
	st     *store.Store
}

func newFixture(t *testing.T, srv *s3test.Server, endpoint string) *fixture {
	t.Helper()
	bucket := fmt.Sprintf("custos-%d", time.Now().UnixNano()%1e9)
	srv.MakeBucket(t, bucket)
	f := &fixture{srv: srv, bucket: bucket, prefix: "dc-a/", count: &s3test.Counter{}, dir: t.TempDir()}
	f.cfg = srv.Config(bucket, "dc-a/", endpoint)
	f.cfg.Transport = f.count
	f.open(t)
	t.Cleanup(func() { f.st.Close() })
	return f
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	b, err := s3blob.New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.st, err = store.Open(filepath.Join(f.dir, "media"), store.Options{MinFree: -1, Blobs: b, BlobTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) reopen(t *testing.T) {
	t.Helper()
	if err := f.st.Close(); err != nil {
		t.Fatal(err)
	}
	f.open(t)
}

// record stores an epoch record and n segments from t0 + 4s·from.
func (f *fixture) record(t *testing.T, from, n int) []store.SegmentMeta {
	t.Helper()
	if err := f.st.PutEpoch(cam, t0, t0.Add(time.Hour), []byte("epoch record of "+cam)); err != nil {
		t.Fatal(err)
	}
	var out []store.SegmentMeta
	for i := from; i < from+n; i++ {
		m, ct := segment(i)
		if err := f.st.Put(m, ct); err != nil {
			t.Fatalf("put segment %d: %v", i, err)
		}
		out = append(out, m)
	}
	return out
}

func segment(i int) (store.SegmentMeta, []byte) {
	ct := bytes.Repeat([]byte(fmt.Sprintf("ciphertext %d;", i)), 1000+i)
	start := t0.Add(time.Duration(i) * 4 * time.Second)
	return store.SegmentMeta{Camera: cam, Start: start, End: start.Add(4 * time.Second), EpochStart: t0,
		Size: int64(len(ct)), SHA256: sha256.Sum256(ct)}, ct
}

// objects lists the bucket under the store's prefix: key → bytes.
func (f *fixture) objects(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for k := range f.srv.Objects(t, f.bucket, f.prefix) {
		out[strings.TrimPrefix(k, f.prefix)] = f.srv.Get(t, f.bucket, k)
	}
	return out
}

func segmentKey(t *testing.T, f *fixture, m store.SegmentMeta) string {
	t.Helper()
	for k := range f.objects(t) {
		if strings.HasPrefix(k, "segments/") && strings.HasPrefix(path.Base(k), m.Start.Format("20060102T150405.000000000Z")) {
			return k
		}
	}
	t.Fatalf("no object for segment %s", m.Start)
	return ""
}

// Segments and epoch records go to the bucket byte for byte under the
// store's names, the index keeps their SHA-256, reads check it, and
// putting them again uploads nothing.
func TestStoreOnS3(t *testing.T) {
	srv := s3test.Shared(t)
	f := newFixture(t, srv, "")
	segs := f.record(t, 0, 5)
	objs := f.objects(t)
	if len(objs) != 6 {
		t.Fatalf("the bucket holds %d objects, want 5 segments and 1 epoch record: %v", len(objs), keysOf(objs))
	}
	for _, m := range segs {
		_, ct := segment(int(m.Start.Sub(t0) / (4 * time.Second)))
		key := segmentKey(t, f, m)
		if !bytes.Equal(objs[key], ct) {
			t.Errorf("%s: the object is not the segment's bytes", key)
		}
		if !strings.Contains(key, fmt.Sprintf("%x", m.SHA256)) {
			t.Errorf("%s: the name does not carry the sha256 %x", key, m.SHA256)
		}
		got, err := f.st.ReadSegment(m)
		if err != nil || !bytes.Equal(got, ct) {
			t.Errorf("read %s: %v", key, err)
		}
	}
	idx, err := f.st.Segments(cam, t0, t0.Add(time.Hour))
	if err != nil || len(idx) != 5 {
		t.Fatalf("index: %d segments, %v", len(idx), err)
	}
	for i, m := range idx {
		if m.SHA256 != segs[i].SHA256 || m.Size != segs[i].Size {
			t.Errorf("index entry %d: %x/%d, want %x/%d", i, m.SHA256, m.Size, segs[i].SHA256, segs[i].Size)
		}
	}
	puts := f.count.Puts()
	f.record(t, 0, 5)
	if n := f.count.Puts() - puts; n != 0 {
		t.Errorf("putting the same segments again uploaded %d objects", n)
	}
	if h := f.st.Health(); h.Storage != "s3://"+f.bucket+"/dc-a/" || h.Alarm() != "" {
		t.Errorf("health %+v", h)
	}
}

// An object changed in the bucket is refused on read with an integrity
// error and an alarm, and its bytes are never returned.
func TestTamperedObjectIsRefused(t *testing.T) {
	srv := s3test.Shared(t)
	f := newFixture(t, srv, "")
	segs := f.record(t, 0, 2)
	key := segmentKey(t, f, segs[1])
	_, ct := segment(1)
	forged := bytes.Clone(ct)
	forged[100] ^= 1
	srv.Put(t, f.bucket, f.prefix+key, forged)
	got, err := f.st.ReadSegment(segs[1])
	if !errors.Is(err, store.ErrCorrupt) || got != nil {
		t.Fatalf("read of a changed object: %d bytes, %v; want ErrCorrupt and nothing", len(got), err)
	}
	if h := f.st.Health(); h.Corrupt != 1 || !strings.Contains(h.Alarm(), "integrity") {
		t.Errorf("health after a corrupt read: %+v", h)
	}
	if _, err := f.st.ReadSegment(segs[0]); err != nil {
		t.Errorf("the intact segment: %v", err)
	}
	// Another size, too.
	srv.Put(t, f.bucket, f.prefix+key, ct[:len(ct)-1])
	if _, err := f.st.ReadSegment(segs[1]); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("a shortened object: %v", err)
	}
}

// A restart uploads nothing again; objects a crash left unindexed (upload
// done, index not) are indexed from a LIST without an upload, damaged ones
// deleted; indexed objects that vanished are an alarm and stay indexed.
func TestRestartOnS3(t *testing.T) {
	srv := s3test.Shared(t)
	f := newFixture(t, srv, "")
	segs := f.record(t, 0, 4)
	// What a crash after the upload of segments 4 and 5 leaves: objects
	// the index lacks (one intact, one whose bytes do not match its name).
	m4, ct4 := segment(4)
	m5, ct5 := segment(5)
	key4, key5 := keyOf(m4), keyOf(m5)
	srv.Put(t, f.bucket, f.prefix+key4, ct4)
	srv.Put(t, f.bucket, f.prefix+key5, ct5[1:])
	// And an indexed object lost from the bucket.
	lost := segmentKey(t, f, segs[1])
	srv.Delete(t, f.bucket, f.prefix+lost)

	puts := f.count.Puts()
	f.reopen(t)
	rec := f.st.Recovery()
	if len(rec.Reindexed) != 1 || !strings.Contains(rec.Reindexed[0], m4.Start.Format("20060102T150405")) {
		t.Errorf("re-indexed %v, want segment 4", rec.Reindexed)
	}
	if len(rec.Damaged) != 1 || !strings.Contains(rec.Damaged[0], "deleted") {
		t.Errorf("damaged %v, want segment 5 deleted", rec.Damaged)
	}
	if len(rec.Missing) != 1 || !strings.Contains(rec.Missing[0], lost) {
		t.Errorf("missing %v, want %s", rec.Missing, lost)
	}
	if _, ok := f.objects(t)[key5]; ok {
		t.Error("the damaged object is still in the bucket")
	}
	h := f.st.Health()
	if len(h.Missing) != 1 || !strings.Contains(h.Alarm(), "missing") {
		t.Errorf("health after losing an object: %+v", h)
	}
	idx, _ := f.st.Segments(cam, t0, t0.Add(time.Hour))
	if len(idx) != 5 {
		t.Errorf("index holds %d segments, want 5 (the lost one stays indexed, segment 4 re-indexed)", len(idx))
	}
	if _, err := f.st.ReadSegment(segs[1]); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("reading the lost segment: %v", err)
	}
	got, err := f.st.ReadSegment(m4)
	if err != nil || !bytes.Equal(got, ct4) {
		t.Errorf("reading the re-indexed segment: %v", err)
	}
	// The newest (a replica's cursor) is segment 4: nothing is fetched or
	// uploaded again.
	if n, ok, _, _, _ := f.st.Newest(cam); !ok || !n.Start.Equal(m4.Start) {
		t.Errorf("newest %v, want segment 4", n.Start)
	}
	f.record(t, 0, 5)
	if n := f.count.Puts() - puts; n != 0 {
		t.Errorf("the restart and putting everything again uploaded %d objects", n)
	}
}

// Retention and erasure delete the objects.
func TestRetentionAndErasureDeleteObjects(t *testing.T) {
	srv := s3test.Shared(t)
	f := newFixture(t, srv, "")
	segs := f.record(t, 0, 6)
	d, err := f.st.DeleteBefore(cam, segs[2].End.Add(time.Nanosecond))
	if err != nil || d.Segments != 3 {
		t.Fatalf("retention: %+v %v", d, err)
	}
	if err := f.st.AddTombstone(cam, segs[4].Start, segs[4].End); err != nil {
		t.Fatal(err)
	}
	er, err := f.st.DeleteRange(cam, segs[4].Start, segs[4].End, nil)
	if err != nil || len(er.Segments) != 1 {
		t.Fatalf("erasure: %+v %v", er, err)
	}
	objs := f.objects(t)
	for i, m := range segs {
		key := fmt.Sprintf("%x", m.SHA256)
		found := false
		for k := range objs {
			found = found || strings.Contains(k, key)
		}
		if want := i == 3 || i == 5; found != want {
			t.Errorf("segment %d in the bucket: %v, want %v", i, found, want)
		}
	}
	// Retention past everything takes the epoch record too.
	if _, err := f.st.DeleteBefore(cam, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if objs := f.objects(t); len(objs) != 0 {
		t.Errorf("after retention of everything the bucket holds %v", keysOf(objs))
	}
	// Nothing comes back at a restart.
	f.reopen(t)
	if rec := f.st.Recovery(); !rec.Empty() {
		t.Errorf("recovery after deletions: %s", rec)
	}
}

// A stopped server, a missing bucket, refused credentials: Put fails with
// ErrUnavailable and an alarm, nothing is indexed; when the server is back,
// writes succeed and the alarm clears. No secret in any message.
func TestUnavailableBucket(t *testing.T) {
	const secret = "s3cr3t-never-in-a-message-91f0"
	srv := s3test.Start(t, s3test.Options{Identity: &s3test.Identity{AccessKey: "custos-dc-a", SecretKey: secret}})
	f := newFixture(t, srv, "")
	f.record(t, 0, 2)
	checkNoSecret := func(what string, texts ...string) {
		for _, s := range texts {
			if s3test.Contains(s, secret) {
				t.Errorf("%s shows the secret key: %s", what, s)
			}
		}
	}

	srv.Stop()
	m, ct := segment(2)
	err := f.st.Put(m, ct)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("put with the server stopped: %v", err)
	}
	h := f.st.Health()
	if !h.Unavailable || h.Alarm() == "" {
		t.Errorf("no alarm with the server stopped: %+v", h)
	}
	checkNoSecret("the stopped server's error", err.Error(), h.Alarm())
	if err := f.st.Probe(); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("probe with the server stopped: %v", err)
	}
	if n, _, _, _, _ := f.st.Newest(cam); !n.Start.Before(m.Start) {
		t.Errorf("the index advanced to %s with the server stopped", n.Start)
	}
	srv.Restart(t)
	if err := f.st.Put(m, ct); err != nil {
		t.Fatalf("put after the server came back: %v", err)
	}
	if h := f.st.Health(); h.Unavailable || h.Alarm() != "" {
		t.Errorf("the alarm did not clear: %+v", h)
	}

	// Wrong secret key.
	bad := f.cfg
	bad.SecretKey = "wrong-" + secret
	b, _ := s3blob.New(bad)
	st2, err := store.Open(filepath.Join(t.TempDir(), "media"), store.Options{MinFree: -1, Blobs: b, BlobTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	err = st2.PutEpoch(cam, t0, t0.Add(time.Hour), []byte("record"))
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "refused the credentials") {
		t.Errorf("wrong credentials: %v", err)
	}
	h = st2.Health()
	if !h.Unavailable {
		t.Errorf("no alarm for wrong credentials: %+v", h)
	}
	checkNoSecret("the wrong credentials' error", err.Error(), h.Alarm(), fmt.Sprintf("%+v", h), fmt.Sprintf("%+v", st2.Recovery()))

	// A bucket that does not exist.
	nob := f.cfg
	nob.Bucket = "custos-no-such-bucket"
	b, _ = s3blob.New(nob)
	st3, err := store.Open(filepath.Join(t.TempDir(), "media"), store.Options{MinFree: -1, Blobs: b, BlobTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st3.Close()
	err = st3.PutEpoch(cam, t0, t0.Add(time.Hour), []byte("record"))
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), `bucket "custos-no-such-bucket" does not exist`) {
		t.Errorf("missing bucket: %v", err)
	}
	if !st3.Health().Unavailable {
		t.Error("no alarm for a missing bucket")
	}
	if err := st3.Probe(); !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("probe of a missing bucket: %v", err)
	}
	if err := st2.Probe(); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("probe with wrong credentials: %v", err)
	}
	if err := f.st.Probe(); err != nil {
		t.Errorf("probe of the bucket: %v", err)
	}
}

// A full bucket (507 or QuotaExceeded) refuses with ErrDiskFull and the
// full alarm, nothing is indexed; with space again, writes go on.
func TestFullBucket(t *testing.T) {
	srv := s3test.Shared(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	f := newFixture(t, srv, proxy.Endpoint)
	f.record(t, 0, 1)
	for i, code := range []string{"InsufficientStorage", "QuotaExceeded"} {
		proxy.SetFull(code)
		m, ct := segment(1 + i)
		err := f.st.Put(m, ct)
		if !errors.Is(err, store.ErrDiskFull) {
			t.Fatalf("%s: %v, want ErrDiskFull", code, err)
		}
		if h := f.st.Health(); !h.DiskFull || !strings.Contains(h.Reason, "full or over its quota") {
			t.Errorf("%s: health %+v", code, h)
		}
		if n, _, _, _, _ := f.st.Newest(cam); !n.Start.Before(m.Start) {
			t.Errorf("%s: the index advanced to %s", code, n.Start)
		}
		proxy.SetFull("")
		if err := f.st.Put(m, ct); err != nil {
			t.Fatal(err)
		}
		if h := f.st.Health(); h.DiskFull {
			t.Errorf("%s: the alarm did not clear: %+v", code, h)
		}
	}
}

// keyOf is the object key the store gives a segment (package store's
// layout).
func keyOf(m store.SegmentMeta) string {
	const layout = "20060102T150405.000000000Z"
	return fmt.Sprintf("segments/%s/%s/%s-%s-%s-%x.seg", strings.ReplaceAll(m.Camera, "/", "%2F"), m.Start.Format("2006-01-02"),
		m.Start.Format(layout), m.End.Format(layout), m.EpochStart.Format(layout), m.SHA256)
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
