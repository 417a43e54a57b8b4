package node

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/store/s3blob"
	"github.com/custos-cctv/custos/media/store/s3blob/s3test"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// dc-a started with its replicas in a bucket (custos up --replicas): a
// store's recordings reach the bucket over the mesh through the node's own
// puller, byte for byte under the store's names; status names the bucket;
// when the S3 server stops, status shows the alarm and replication waits;
// when it is back, the replica catches up and the alarm clears. Runs
// against a real SeaweedFS (skips without CUSTOS_WEED).
func TestReplicasInS3Bucket(t *testing.T) {
	srv := s3test.Start(t, s3test.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 170*time.Second)
	defer cancel()
	const bucket = "custos-replicas"
	srv.MakeBucket(t, bucket)
	cfg := srv.Config(bucket, "dc-a/", "")
	cfg.MaxRetries = 1
	blobs, err := s3blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := foundAcmeWith(t, ctx, func(c *Config) { c.ReplicaBlobs = blobs })
	if res, err := SubmitVia(ctx, f.dc.cfg.Dir, signed(t, f.admin, "alice", &policy.Command{Kind: policy.KindAddCamera,
		Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})); err != nil || !res.Applied {
		t.Fatalf("camera: %+v %v", res, err)
	}
	st1 := joinAcmeWith(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store", Site: "praha-1"}, func(c *Config) {
		c.Recording = recording.Config{Segment: ts.Config{Target: time.Second}, MinFree: -1}
	})
	segsInBucket := func() int {
		n := 0
		for k := range srv.Objects(t, bucket, "dc-a/") {
			if strings.HasSuffix(k, ".seg") {
				n++
			}
		}
		return n
	}
	waitTrue(t, 90*time.Second, "4 segments in the bucket", func() bool { return segsInBucket() >= 4 })
	s, err := f.dc.Status()
	if err != nil {
		t.Fatal(err)
	}
	if h := s.ReplicaStorage; h == nil || h.Storage != "s3://"+bucket+"/dc-a/" || h.Alarm() != "" {
		t.Fatalf("dc-a's replica storage in status: %+v", h)
	}
	if n := countSegments(t, MediaDir(f.dc.cfg.Dir)); n != 0 {
		t.Errorf("dc-a holds %d segment files on its disk besides the bucket", n)
	}

	srv.Stop()
	waitTrue(t, 60*time.Second, "dc-a's status to show the storage alarm", func() bool {
		s, err := f.dc.Status()
		return err == nil && s.ReplicaStorage != nil && s.ReplicaStorage.Unavailable
	})
	srv.Restart(t)
	before := segsInBucket()
	waitTrue(t, 60*time.Second, "the alarm to clear and replication to go on", func() bool {
		s, err := f.dc.Status()
		return err == nil && s.ReplicaStorage != nil && s.ReplicaStorage.Alarm() == "" && segsInBucket() >= before+2
	})

	// Stop the store and compare: every object is the store's file.
	if err := st1.Close(); err != nil {
		t.Fatal(err)
	}
	storeFiles := mediaFiles(t, MediaDir(st1.cfg.Dir))
	got := srv.Objects(t, bucket, "dc-a/")
	var newest string
	for key := range got {
		rel := strings.TrimPrefix(key, "dc-a/")
		want, ok := storeFiles[rel]
		if !ok {
			t.Errorf("the bucket holds %s, which the store does not", rel)
			continue
		}
		if b := srv.Get(t, bucket, key); len(b) == 0 || sha256.Sum256(b) != want {
			t.Errorf("%s: the object is not the store's file byte for byte", rel)
		}
		if strings.HasSuffix(rel, ".seg") && rel > newest {
			newest = rel
		}
	}
	for rel := range storeFiles {
		if _, ok := got["dc-a/"+rel]; !ok && strings.HasSuffix(rel, ".seg") && rel <= newest {
			t.Errorf("the bucket lacks %s, older than its newest segment", rel)
		}
	}
	t.Logf("the bucket holds %d objects identical to the store's files (%d there)", len(got), len(storeFiles))
}
