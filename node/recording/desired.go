package recording

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

type wantRec struct {
	key        string
	source     string       // the policy's URL, without credentials
	sec        CameraSecret // from camera-secrets.json
	custodians []keys.Custodian
	signer     *keys.CustodySigner // this store's seal, under its policy name
}

// desired lists the cameras this node should record now, or says why none.
func (r *Recorder) desired(st *policy.State) (map[string]wantRec, string) {
	if r.d.Halted != nil {
		if why := r.d.Halted(); why != "" {
			return nil, why
		}
	}
	self := r.d.SelfName(st)
	me := st.Nodes[self]
	if me == nil || me.Role != policy.RoleStore || !policy.Member(st, self, r.now()) {
		return nil, "this node is not a live store in the policy"
	}
	custodians, err := CustodiansOf(st)
	if err != nil {
		return nil, err.Error()
	}
	secrets, err := loadCameraSecrets(r.d.Dir)
	if err != nil {
		return nil, err.Error()
	}
	h := sha256.New()
	for _, c := range custodians {
		fp := c.Fingerprint()
		h.Write(fp[:])
	}
	custodianSum := hex.EncodeToString(h.Sum(nil))
	signer, err := r.d.Custody.Named(self)
	if err != nil {
		return nil, err.Error()
	}
	want := map[string]wantRec{}
	for id, cam := range st.Cameras {
		if cam.Site != me.Site || cam.Source == "" {
			continue
		}
		sec := secrets[id]
		// Not the pin: learning it on first use must not restart the
		// recording. An operator's re-pin changes SetAt.
		sum := sha256.Sum256(fmt.Appendf(nil, "%q %q %q %q %q %s %s", cam.Source, sec.User, sec.Password,
			sec.Transport, sec.CA, sec.SetAt.Format(time.RFC3339Nano), custodianSum))
		want[id] = wantRec{key: hex.EncodeToString(sum[:]), source: cam.Source, sec: sec, custodians: custodians, signer: signer}
	}
	return want, ""
}

// CustodiansOf returns whom epoch keys are split to: every live datacenter
// with a custodian key in a jurisdiction the policy keeps data in (a share
// is data: DESIGN §4 invariant 9), and the controller's recovery key.
func CustodiansOf(st *policy.State) ([]keys.Custodian, error) {
	var out []keys.Custodian
	names := make([]string, 0, len(st.Nodes))
	for name := range st.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		nd := st.Nodes[name]
		if nd.Role != policy.RoleDatacenter || nd.Revoked || nd.Custodian == nil || !st.DataJurisdictionAllowed(nd.Jurisdiction) {
			continue
		}
		c, err := keys.NewCustodian(name, nd.Custodian)
		if err != nil {
			return nil, fmt.Errorf("custodian key of %s: %w", name, err)
		}
		out = append(out, c)
	}
	if st.Recovery != nil {
		c, err := keys.NewCustodian("recovery", st.Recovery)
		if err != nil {
			return nil, fmt.Errorf("recovery key: %w", err)
		}
		out = append(out, c)
	}
	if len(out) < keys.EpochThreshold {
		return nil, fmt.Errorf("waiting for custodian keys: %d known, recording needs %d (the datacenters' and the recovery key)", len(out), keys.EpochThreshold)
	}
	return out, nil
}

func (r *Recorder) now() time.Time {
	if r.d.Now != nil {
		return r.d.Now()
	}
	return time.Now()
}
