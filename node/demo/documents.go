package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/gdpr"
)

// documents: alice records the controller and its DPO, then the records of
// processing, and per site a DPIA, the full notice and the entrance sign
// are generated from the committed policy into the demo's directory, in
// Czech.
func (f *federation) documents() error {
	f.say("\n== GDPR documents from the committed policy (Czech; PDF)")
	c := &policy.Controller{Name: "Acme Retail s.r.o.", Address: "Vinohradská 1, 120 00 Praha 2", Email: "gdpr@acme.example", Phone: "+420 222 000 111",
		DPOName: "Jana Dvořáková", DPOEmail: "dpo@acme.example"}
	if err := f.submit(&policy.Command{Kind: policy.KindSetController, Controller: c}); err != nil {
		return err
	}
	dc := f.nodes["dc-a"]
	if err := nodetest.WaitCond(f.ctx, 10*time.Second, func() bool { return dc.Policy().Controller != nil }); err != nil {
		return err
	}
	st := dc.Policy()
	in := gdpr.FromPolicy(st)
	in.Lang, in.Now, in.NoticeURL = "cs", time.Now(), "https://acme.example/kamery"
	out := filepath.Join(f.dir, "gdpr")
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	write := func(name string, make func(gdpr.Input) (*gdpr.Doc, error), in gdpr.Input) error {
		doc, err := make(in)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		path := filepath.Join(out, name)
		fh, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := doc.PDF(fh); err != nil {
			fh.Close()
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := fh.Close(); err != nil {
			return err
		}
		f.say("   %s", path)
		return nil
	}
	if err := write("ropa.pdf", gdpr.RoPA, in); err != nil {
		return err
	}
	var sites []string
	for name := range st.Sites {
		sites = append(sites, name)
	}
	slices.Sort(sites)
	for _, site := range sites {
		has := false
		for _, cam := range st.Cameras {
			has = has || cam.Site == site
		}
		if !has {
			continue
		}
		in.Site = site
		for _, d := range []struct {
			name string
			make func(gdpr.Input) (*gdpr.Doc, error)
		}{{"dpia", gdpr.DPIA}, {"notice", gdpr.Notice}, {"sign", gdpr.Sign}} {
			if err := write(d.name+"-"+site+".pdf", d.make, in); err != nil {
				return err
			}
		}
	}
	f.say("   stamped with policy version %d; custos gdpr check lists what goes stale", st.Applied)
	return nil
}
