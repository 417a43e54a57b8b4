package gdpr

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/custos-cctv/custos/policy"
)

// Finding is one thing in the controller's paperwork that is missing or
// stale.
type Finding struct {
	// Code names the kind of finding, stable for scripts: no-policy,
	// no-controller, controller-contact, no-dpo, dpo-contact, no-purpose,
	// no-legal-basis, retention-unjustified, no-dpia, camera-after-dpia,
	// dpia-unverifiable, dpia-ahead, transfer-outside-eea.
	Code   string
	Site   string // when it concerns one site
	Camera string // when it concerns one camera ("site/name")
	Text   string // what is wrong and what to do, in English
}

func (f Finding) String() string { return f.Code + ": " + f.Text }

// Check lists what is missing or stale in the documents in would make.
// lastDPIA maps a site to the policy index its last DPIA was generated at
// (nil or missing: never). The policy does not record when a camera was
// added; a camera added after its site's last DPIA is found exactly when
// in.CameraAdded has its index, and otherwise a DPIA older than the policy
// is reported as one that cannot be verified. Findings are sorted by site,
// camera and code.
func Check(in Input, lastDPIA map[string]uint64) []Finding {
	var out []Finding
	add := func(code, site, camera, format string, a ...any) {
		out = append(out, Finding{Code: code, Site: site, Camera: camera, Text: fmt.Sprintf(format, a...)})
	}
	c := in.Controller
	switch {
	case strings.TrimSpace(c.Name) == "":
		add("no-controller", "", "", "no controller is set: every document and sign must name the controller (art. 13(1)(a), 30(1)(a))")
	case strings.TrimSpace(c.Address) == "" || strings.TrimSpace(c.Email) == "":
		add("controller-contact", "", "", "the controller %q has no address or no email: the notice must give contact details (art. 13(1)(a))", c.Name)
	}
	switch {
	case strings.TrimSpace(c.DPOName) == "" && strings.TrimSpace(c.DPOEmail) == "" && strings.TrimSpace(c.DPOPhone) == "":
		add("no-dpo", "", "", "no data protection officer is set: one is required where the core activity is regular and systematic monitoring on a large scale (art. 37(1)(b)); the sign and notice now say none is named")
	case strings.TrimSpace(c.DPOEmail) == "" && strings.TrimSpace(c.DPOPhone) == "":
		add("dpo-contact", "", "", "the data protection officer has no email or phone: the notice must give the DPO's contact details (art. 13(1)(b))")
	}
	s := in.State
	if s == nil || s.Federation == "" {
		add("no-policy", "", "", "no policy: the node has no federation state yet")
		return sortFindings(out)
	}
	for _, site := range sortedKeys(s.Sites) {
		var cams []*policy.Camera
		for _, k := range sortedKeys(s.Cameras) {
			if cam := s.Cameras[k]; cam.Site == site {
				cams = append(cams, cam)
			}
		}
		for _, cam := range cams {
			if strings.TrimSpace(cam.Purpose) == "" {
				add("no-purpose", site, cam.Key(), "camera %s has no purpose (art. 5(1)(b))", cam.Key())
			}
			if strings.TrimSpace(cam.LegalBasis) == "" {
				add("no-legal-basis", site, cam.Key(), "camera %s has no legal basis (art. 6)", cam.Key())
			}
			if cam.Retention > policy.DefaultRetention && strings.TrimSpace(cam.Justification) == "" {
				add("retention-unjustified", site, cam.Key(), "camera %s keeps footage %v, above the default %v, without a justification", cam.Key(), cam.Retention, policy.DefaultRetention)
			}
		}
		if len(cams) == 0 {
			continue
		}
		last, ok := lastDPIA[site]
		switch {
		case !ok:
			add("no-dpia", site, "", "site %s has %d camera(s) and no DPIA was generated for it", site, len(cams))
			continue
		case in.Index != 0 && last > in.Index:
			add("dpia-ahead", site, "", "the DPIA of site %s was made at policy index %d, after this policy's index %d: this node's policy is behind, or the record is wrong", site, last, in.Index)
			continue
		}
		var unknown []string
		for _, cam := range cams {
			added, known := in.CameraAdded[cam.Key()]
			switch {
			case !known:
				unknown = append(unknown, cam.Name)
			case added > last:
				add("camera-after-dpia", site, cam.Key(), "camera %s was added at policy index %d, after the site's last DPIA (index %d): regenerate and review the DPIA", cam.Key(), added, last)
			}
		}
		if len(unknown) > 0 && in.Index > last {
			add("dpia-unverifiable", site, "", "the DPIA of site %s was made at policy index %d and the policy is now at %d; the policy does not record when cameras %s were added, so whether the DPIA covers them cannot be told: review it", site, last, in.Index, strings.Join(unknown, ", "))
		}
	}
	allowed := s.DataJurisdictions
	if len(allowed) == 0 {
		allowed = policy.DefaultDataJurisdictions
	}
	for _, j := range allowed {
		if !InEEA(j) {
			add("transfer-outside-eea", "", "", "the policy lets replicas be kept in %s, outside the EU/EEA: document the safeguards of the transfer (art. 46) in the records of processing", j)
		}
	}
	return sortFindings(out)
}

func sortFindings(fs []Finding) []Finding {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Site, b.Site), cmp.Compare(a.Camera, b.Camera), cmp.Compare(a.Code, b.Code))
	})
	return fs
}
