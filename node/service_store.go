package node

// Helpers the node service's ops share (replication, live view; the store
// and datacenter ops of a release are node/release's): strict decoding of
// a request body, timestamps in messages, denials, and a camera's store.

import (
	"fmt"
	"sort"
	"time"

	"github.com/custos-cctv/custos/policy"
)

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// storeOf is the live store of camera's site.
func storeOf(st *policy.State, camera string) (string, error) {
	c := st.Cameras[camera]
	if c == nil {
		return "", fmt.Errorf("camera %s is no longer in the policy", camera)
	}
	var names []string
	for name, nd := range st.Nodes {
		if nd.Role == policy.RoleStore && nd.Site == c.Site && policy.Member(st, name, time.Now()) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("site %s has no live store to fetch %s from", c.Site, camera)
	}
	sort.Strings(names)
	return names[0], nil
}
