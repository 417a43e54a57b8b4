// Package s3blob keeps a media store's segments and epoch records in an
// S3-compatible bucket (store.Blobs), for a datacenter's replicas:
// `custos up --replicas s3://BUCKET/PREFIX`.
//
// Why this shape: the store's bbolt index stays on the node's own disk and
// stays authoritative (it holds every object's size and SHA-256), and only
// the bytes move to the bucket behind store.Blobs, a four-method interface.
// So the store's checks, ordering and crash rules stay in one place
// (media/store/blobs.go) for files and objects alike, a bucket is trusted
// with nothing but keeping ciphertext (every read is checked against the
// local index, and no key or plaintext ever reaches this package), and the
// local-disk path is untouched.
//
// This package maps the S3 API onto that interface with minio-go: an
// object is uploaded in one PUT with its SHA-256 as user metadata, after a
// HEAD that skips the upload if the object is already there with that
// hash (idempotent, and a restart re-uploads nothing); a missing key reads
// as store.ErrNotFound; a full or over-quota bucket is store.ErrDiskFull;
// an unreachable endpoint, a missing bucket or refused credentials is
// store.ErrUnavailable, which the store turns into its alarm.
//
// Credentials come from the environment or a 0600 file (config.go), never
// from flags, and appear in no error, status or log line: errors name the
// endpoint, bucket and key only.
package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/custos-cctv/custos/media/store"
)

// Blobs is a bucket (and key prefix) as a store.Blobs.
type Blobs struct {
	c      *minio.Client
	cfg    Config
	bucket string
	prefix string // "" or ending in "/"
}

var (
	_ store.Blobs  = (*Blobs)(nil)
	_ store.Prober = (*Blobs)(nil)
)

// metaSHA256 is the user metadata that carries an object's SHA-256, so a
// HEAD can tell whether the bytes are already there.
const metaSHA256 = "Custos-Sha256"

// New returns the bucket cfg names. It does not contact the endpoint.
func New(cfg Config) (*Blobs, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	retries := cfg.MaxRetries
	if retries <= 0 {
		retries = 3
	}
	c, err := minio.New(cfg.endpointHost(), &minio.Options{
		Creds:        creds,
		Secure:       !cfg.Insecure,
		Region:       cfg.Region,
		Transport:    cfg.Transport,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   retries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: endpoint %s: %v", cfg.endpointHost(), scrub(err, cfg))
	}
	return &Blobs{c: c, cfg: cfg, bucket: cfg.Bucket, prefix: cfg.Prefix}, nil
}

// String is the bucket's URL, without endpoint or credentials: the
// identity the store's index records.
func (b *Blobs) String() string { return "s3://" + b.bucket + "/" + b.prefix }

// Put uploads data under key unless the object is there with these bytes.
func (b *Blobs) Put(ctx context.Context, key string, data []byte) error {
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	info, err := b.c.StatObject(ctx, b.bucket, b.prefix+key, minio.StatObjectOptions{})
	if err == nil && info.Size == int64(len(data)) && strings.EqualFold(userMeta(info.UserMetadata, metaSHA256), want) {
		return nil
	}
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" && minio.ToErrorResponse(err).StatusCode != http.StatusNotFound {
		return b.wrap("put", key, err)
	}
	_, err = b.c.PutObject(ctx, b.bucket, b.prefix+key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType:    "application/octet-stream",
		UserMetadata:   map[string]string{metaSHA256: want},
		SendContentMd5: true, // the server checks the body it stores
	})
	return b.wrap("put", key, err)
}

// Get reads the object under key, at most limit bytes.
func (b *Blobs) Get(ctx context.Context, key string, limit int64) ([]byte, error) {
	obj, err := b.c.GetObject(ctx, b.bucket, b.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, b.wrap("get", key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, limit+1))
	if err != nil {
		return nil, b.wrap("get", key, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("s3: get %s: over %d bytes", b.name(key), limit)
	}
	return data, nil
}

// Delete removes the object under key.
func (b *Blobs) Delete(ctx context.Context, key string) error {
	err := b.c.RemoveObject(ctx, b.bucket, b.prefix+key, minio.RemoveObjectOptions{})
	if r := minio.ToErrorResponse(err); r.Code == "NoSuchKey" {
		return nil
	}
	return b.wrap("delete", key, err)
}

// List calls fn for each key under prefix.
func (b *Blobs) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for obj := range b.c.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: true}) {
		if obj.Err != nil {
			return b.wrap("list", prefix, obj.Err)
		}
		key, ok := strings.CutPrefix(obj.Key, b.prefix)
		if !ok || strings.HasSuffix(key, "/") {
			continue
		}
		if err := fn(key, obj.Size); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Probe asks whether the bucket exists and takes the credentials: one
// small request, where a pull would fetch footage it could not store.
func (b *Blobs) Probe(ctx context.Context) error {
	ok, err := b.c.BucketExists(ctx, b.bucket)
	if err == nil && !ok {
		err = fmt.Errorf("s3: bucket %s at %s: %w: bucket %q does not exist; create it", b.bucket, b.cfg.endpointHost(), store.ErrUnavailable, b.bucket)
	}
	if err != nil && !errors.Is(err, store.ErrUnavailable) {
		err = b.wrap("probe", "", err)
	}
	return err
}

// name is key as errors show it.
func (b *Blobs) name(key string) string {
	return fmt.Sprintf("s3://%s/%s%s at %s", b.bucket, b.prefix, key, b.cfg.endpointHost())
}

// wrap turns the S3 client's errors into the store's: what was wrong, what
// to do, never a credential.
func (b *Blobs) wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	r := minio.ToErrorResponse(err)
	what := fmt.Sprintf("s3: %s %s", op, b.name(key))
	switch {
	case r.Code == "NoSuchKey":
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	case r.StatusCode == http.StatusInsufficientStorage || r.Code == "QuotaExceeded" || r.Code == "InsufficientStorage" ||
		r.Code == "XMinioStorageFull" || r.Code == "StorageFull":
		return fmt.Errorf("%s: %w: the bucket is full or over its quota (%s); free space in it or raise the quota", what, store.ErrDiskFull, codeOf(r))
	case r.Code == "NoSuchBucket":
		return fmt.Errorf("%s: %w: bucket %q does not exist; create it", what, store.ErrUnavailable, b.bucket)
	case r.Code == "InvalidAccessKeyId" || r.Code == "SignatureDoesNotMatch" || r.Code == "AccessDenied" ||
		r.StatusCode == http.StatusForbidden || r.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s: %w: the endpoint refused the credentials (%s); check the access and secret key (environment or --replicas-credentials)",
			what, store.ErrUnavailable, codeOf(r))
	case r.StatusCode != 0:
		return fmt.Errorf("%s: %w: %s", what, store.ErrUnavailable, codeOf(r))
	}
	// No answer (refused, reset, timed out): the endpoint is unreachable.
	return fmt.Errorf("%s: %w: %v", what, store.ErrUnavailable, scrub(err, b.cfg))
}

func codeOf(r minio.ErrorResponse) string {
	s := fmt.Sprintf("HTTP %d", r.StatusCode)
	if r.Code != "" {
		s += " " + r.Code
	}
	return s
}

// scrub removes the secret key from a message, should a library ever put
// it there.
func scrub(err error, cfg Config) string {
	s := err.Error()
	if cfg.SecretKey != "" {
		s = strings.ReplaceAll(s, cfg.SecretKey, "[secret]")
	}
	return s
}

// userMeta finds a user metadata value whichever way the client keyed it.
func userMeta(m map[string]string, name string) string {
	for k, v := range m {
		k = strings.TrimPrefix(strings.ToLower(k), "x-amz-meta-")
		if k == strings.ToLower(name) {
			return v
		}
	}
	return ""
}
