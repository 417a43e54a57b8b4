package s3blob

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		in, bucket, prefix, err string
	}{
		{in: "s3://custos-replicas", bucket: "custos-replicas"},
		{in: "s3://custos-replicas/", bucket: "custos-replicas"},
		{in: "s3://custos-replicas/dc-a", bucket: "custos-replicas", prefix: "dc-a/"},
		{in: "s3://custos.replicas/eu/dc-a/", bucket: "custos.replicas", prefix: "eu/dc-a/"},
		{in: "https://bucket/x", err: "want s3://BUCKET/PREFIX"},
		{in: "bucket/x", err: "want s3://BUCKET/PREFIX"},
		{in: "s3://", err: "must be 3 to 63 characters"},
		{in: "s3://ab", err: "must be 3 to 63 characters"},
		{in: "s3://Custos", err: "only lowercase letters"},
		{in: "s3://custos_x", err: "only lowercase letters"},
		{in: "s3://-custos", err: "must start and end"},
		{in: "s3://cus..tos", err: "must start and end"},
		{in: "s3://127.0.0.1", err: "must not be an IP address"},
		{in: "s3://key:secret@bucket/x", err: "no query, fragment, user"},
		{in: "s3://bucket/x?endpoint=evil", err: "no query, fragment, user"},
		{in: "s3://bucket/a//b", err: `prefix element ""`},
		{in: "s3://bucket/a/../b", err: `prefix element ".."`},
		{in: "s3://bucket/./b", err: `prefix element "."`},
		{in: "s3://bucket/a\nb", err: "control character"},
	} {
		b, p, err := ParseURL(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseURL(%q) = %q %q %v, want an error saying %q", c.in, b, p, err, c.err)
			}
			continue
		}
		if err != nil || b != c.bucket || p != c.prefix {
			t.Errorf("ParseURL(%q) = %q %q %v, want %q %q", c.in, b, p, err, c.bucket, c.prefix)
		}
	}
}

func TestEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	base := Config{Bucket: "custos"}
	for _, c := range []struct {
		name string
		env  func(string) string
		err  string
	}{
		{"anonymous loopback", env(EnvEndpoint, "127.0.0.1:8333", EnvInsecure, "1"), ""},
		{"keys over https", env(EnvEndpoint, "s3.example.net", EnvAccessKey, "AK", EnvSecretKey, "very-secret"), ""},
		{"http URL on loopback", env(EnvEndpoint, "http://localhost:8333"), ""},
		{"no endpoint", env(), "no S3 endpoint: set CUSTOS_S3_ENDPOINT"},
		{"access without secret", env(EnvEndpoint, "s3.example.net", EnvAccessKey, "AK"), "no secret key"},
		{"secret without access", env(EnvEndpoint, "s3.example.net", EnvSecretKey, "very-secret"), "no access key"},
		{"plain http off loopback", env(EnvEndpoint, "s3.example.net", EnvInsecure, "true"), "plain HTTP is allowed only to a loopback"},
		{"http URL off loopback", env(EnvEndpoint, "http://10.0.0.1:8333"), "plain HTTP is allowed only to a loopback"},
		{"bad insecure", env(EnvEndpoint, "127.0.0.1:1", EnvInsecure, "maybe"), "CUSTOS_S3_INSECURE"},
		{"credentials in endpoint", env(EnvEndpoint, "https://AK:very-secret@s3.example.net"), "credentials in it"},
		{"path in endpoint", env(EnvEndpoint, "https://s3.example.net/bucket"), "no path"},
		{"other scheme", env(EnvEndpoint, "ftp://s3.example.net"), "want https://"},
	} {
		_, err := Env(base, c.env)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.err)
		}
		if err != nil && strings.Contains(err.Error(), "very-secret") {
			t.Errorf("%s: the error shows the secret: %v", c.name, err)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "endpoint = \"127.0.0.1:8333\"\ninsecure = true\naccess_key = \"AK\"\nsecret_key = \"very-secret\"\nregion = \"eu-central-1\"\n"
	cfg, err := LoadFile(Config{Bucket: "custos"}, write("good", good, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Endpoint != "127.0.0.1:8333" || cfg.AccessKey != "AK" || cfg.SecretKey != "very-secret" || cfg.Region != "eu-central-1" || !cfg.Insecure {
		t.Errorf("loaded %+v", cfg)
	}
	if _, err := LoadFile(Config{Bucket: "custos"}, write("owner-only", good, 0o400)); err != nil {
		t.Errorf("a 0400 file: %v", err)
	}
	for _, c := range []struct {
		name, path, err string
	}{
		{"group-readable", write("g", good, 0o640), "mode 0640 lets group or others read or write it; chmod 600"},
		{"world-readable", write("o", good, 0o604), "mode 0604"},
		{"group-writable", write("gw", good, 0o620), "mode 0620"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"a directory", dir, "not a regular file"},
		{"unknown key", write("k", good+"token = \"x\"\n", 0o600), `unknown key "token"`},
		{"not TOML", write("t", "secret_key = very-secret\n", 0o600), "not TOML (line 1)"},
		{"no secret", write("s", "endpoint = \"127.0.0.1:1\"\ninsecure = true\naccess_key = \"AK\"\n", 0o600), "no secret key"},
		{"no endpoint", write("e", "access_key = \"AK\"\nsecret_key = \"very-secret\"\n", 0o600), "no S3 endpoint"},
	} {
		_, err := LoadFile(Config{Bucket: "custos"}, c.path)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.err)
		}
		if err != nil && strings.Contains(err.Error(), "very-secret") {
			t.Errorf("%s: the error shows the secret: %v", c.name, err)
		}
	}
}
