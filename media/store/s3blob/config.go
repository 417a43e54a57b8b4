package s3blob

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Config names a bucket and how to reach it. Endpoint and credentials come
// from the environment (Env) or a credentials file (LoadFile), never from
// flags, so they are in no process listing and no shell history.
type Config struct {
	Bucket string // from the s3:// URL
	Prefix string // from the s3:// URL: "" or ending in "/"

	Endpoint  string // host[:port], or http(s)://host[:port]
	AccessKey string // empty with SecretKey: anonymous requests
	SecretKey string
	Region    string // "" lets the client ask the endpoint
	// Insecure speaks plain HTTP; allowed only to a loopback endpoint
	// (a test server on this machine).
	Insecure bool

	// Transport, if set, carries the client's requests (tests count and
	// delay them). MaxRetries is the client's retries per request; 0
	// means 3.
	Transport  http.RoundTripper
	MaxRetries int
}

// The environment variables Env reads.
const (
	EnvEndpoint  = "CUSTOS_S3_ENDPOINT"
	EnvAccessKey = "CUSTOS_S3_ACCESS_KEY"
	EnvSecretKey = "CUSTOS_S3_SECRET_KEY"
	EnvRegion    = "CUSTOS_S3_REGION"
	EnvInsecure  = "CUSTOS_S3_INSECURE"
)

// ParseURL splits s3://BUCKET/PREFIX. The bucket must be a valid S3 bucket
// name (3–63 lowercase letters, digits, '-' and '.'); the prefix, if any,
// is '/'-separated elements without empty, "." or ".." ones, and is
// returned ending in "/".
func ParseURL(raw string) (bucket, prefix string, err error) {
	bad := func(why string, a ...any) (string, string, error) {
		return "", "", fmt.Errorf("replicas location %q: %s", raw, fmt.Sprintf(why, a...))
	}
	rest, ok := strings.CutPrefix(raw, "s3://")
	if !ok {
		return bad("want s3://BUCKET/PREFIX")
	}
	if strings.ContainsAny(rest, "?#@\\") {
		return bad("no query, fragment, user or backslash allowed: the endpoint and credentials come from the environment or --replicas-credentials")
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if err := checkBucket(bucket); err != nil {
		return bad("%v", err)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		for _, el := range strings.Split(prefix, "/") {
			if el == "" || el == "." || el == ".." {
				return bad("prefix element %q is not allowed", el)
			}
			for _, r := range el {
				if r < 0x20 || r == 0x7f {
					return bad("prefix has control character %U", r)
				}
			}
		}
		prefix += "/"
	}
	if len(prefix) > 512 {
		return bad("prefix is longer than 512 bytes")
	}
	return bucket, prefix, nil
}

func checkBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("bucket name %q may hold only lowercase letters, digits, '-' and '.'", b)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) || strings.Contains(b, "..") {
		return fmt.Errorf("bucket name %q must start and end with a letter or digit and have no \"..\"", b)
	}
	if _, err := netip.ParseAddr(b); err == nil {
		return fmt.Errorf("bucket name %q must not be an IP address", b)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// Env fills the endpoint and credentials from the environment (getenv,
// os.Getenv if nil).
func Env(cfg Config, getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg.Endpoint = getenv(EnvEndpoint)
	cfg.AccessKey = getenv(EnvAccessKey)
	cfg.SecretKey = getenv(EnvSecretKey)
	cfg.Region = getenv(EnvRegion)
	if v := getenv(EnvInsecure); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return cfg, fmt.Errorf("%s=%q: want true or false", EnvInsecure, v)
		}
		cfg.Insecure = b
	}
	return cfg, cfg.check()
}

// fileConfig is the credentials file: TOML with these keys only.
type fileConfig struct {
	Endpoint  string `toml:"endpoint"`
	AccessKey string `toml:"access_key"`
	SecretKey string `toml:"secret_key"`
	Region    string `toml:"region"`
	Insecure  bool   `toml:"insecure"`
}

// LoadFile fills the endpoint and credentials from a TOML file (keys
// endpoint, access_key, secret_key, region, insecure) that only its owner
// may read: a file that group or others may read or write, or that is not
// a regular file, is refused. The file alone is used, not the environment.
func LoadFile(cfg Config, path string) (Config, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return cfg, fmt.Errorf("replicas credentials: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return cfg, fmt.Errorf("replicas credentials %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return cfg, fmt.Errorf("replicas credentials %s: mode %04o lets group or others read or write it; chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("replicas credentials: %w", err)
	}
	var f fileConfig
	md, err := toml.Decode(string(b), &f)
	if err != nil {
		// The decoder's message may quote the line; say only where.
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return cfg, fmt.Errorf("replicas credentials %s: not TOML (line %d)", path, pe.Position.Line)
		}
		return cfg, fmt.Errorf("replicas credentials %s: not TOML of endpoint, access_key, secret_key, region, insecure", path)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return cfg, fmt.Errorf("replicas credentials %s: unknown key %q (want endpoint, access_key, secret_key, region, insecure)", path, und[0].String())
	}
	cfg.Endpoint, cfg.AccessKey, cfg.SecretKey, cfg.Region, cfg.Insecure = f.Endpoint, f.AccessKey, f.SecretKey, f.Region, f.Insecure
	if err := cfg.check(); err != nil {
		return cfg, fmt.Errorf("replicas credentials %s: %w", path, err)
	}
	return cfg, nil
}

// check says what is missing or refused in cfg.
func (cfg *Config) check() error {
	if cfg.Bucket == "" {
		return errors.New("no bucket: give --replicas s3://BUCKET/PREFIX")
	}
	if err := checkBucket(cfg.Bucket); err != nil {
		return err
	}
	if cfg.Endpoint == "" {
		return fmt.Errorf("no S3 endpoint: set %s or endpoint in the credentials file", EnvEndpoint)
	}
	switch {
	case cfg.AccessKey != "" && cfg.SecretKey == "":
		return fmt.Errorf("an access key but no secret key (%s or secret_key)", EnvSecretKey)
	case cfg.AccessKey == "" && cfg.SecretKey != "":
		return fmt.Errorf("a secret key but no access key (%s or access_key)", EnvAccessKey)
	}
	host := cfg.Endpoint
	if scheme, rest, ok := strings.Cut(host, "://"); ok {
		u, err := url.Parse(cfg.Endpoint)
		switch {
		case err != nil:
			return fmt.Errorf("S3 endpoint %q is not a URL", cfg.Endpoint)
		case scheme != "http" && scheme != "https":
			return fmt.Errorf("S3 endpoint %q: want https://HOST[:PORT] or HOST[:PORT]", cfg.Endpoint)
		case u.User != nil:
			return errors.New("S3 endpoint has credentials in it: give them as access and secret key instead")
		case strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "":
			return fmt.Errorf("S3 endpoint %q: no path or query, only scheme, host and port", u.Host)
		}
		if scheme == "http" {
			cfg.Insecure = true
		}
		host = strings.TrimSuffix(rest, "/")
		cfg.Endpoint = host
	}
	if strings.ContainsAny(host, "/@?# ") {
		return fmt.Errorf("S3 endpoint %q: want HOST[:PORT]", host)
	}
	if cfg.Insecure && !loopback(host) {
		return fmt.Errorf("S3 endpoint %s: plain HTTP is allowed only to a loopback address (a test server on this machine); use HTTPS", host)
	}
	return nil
}

func (cfg Config) endpointHost() string { return cfg.Endpoint }

func loopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}

// Open is what `custos up --replicas URL [--replicas-credentials FILE]`
// does: parse the URL, read the endpoint and credentials from the file if
// given, else from the environment, and make the client.
func Open(rawURL, credFile string) (*Blobs, error) {
	bucket, prefix, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	cfg := Config{Bucket: bucket, Prefix: prefix}
	if credFile != "" {
		cfg, err = LoadFile(cfg, credFile)
	} else {
		cfg, err = Env(cfg, nil)
	}
	if err != nil {
		return nil, err
	}
	return New(cfg)
}
