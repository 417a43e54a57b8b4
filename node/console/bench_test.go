package console

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

// BenchmarkConsoleOverview times the overview page of a federation of 50
// sites (two cameras each) from a logged-in session: page, its HTML over
// HTTP; browser, headless Chromium loading it with its style sheet and
// script to the load event (Navigation Timing). fetch is the baseline: the
// node's status and policy over its local API, which the page needs first.
func BenchmarkConsoleOverview(b *testing.B) {
	f := startFed(b)
	ctx := context.Background()
	for i := range 50 {
		site := fmt.Sprintf("site-%02d", i)
		f.submit(b, ctx, &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: site, Jurisdiction: "EU"}})
		for _, cam := range []string{"door", "till"} {
			f.submit(b, ctx, &policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{Site: site, Name: cam, Source: "synthetic:",
				Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})
		}
	}
	s := startConsole(b, f, "bob", 0)
	br := newBrowser(b, s)
	br.login(b)
	perPage := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(time.Since(start))/float64(b.N)/float64(time.Millisecond), "ms/page")
	}
	b.Run("fetch", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			if _, err := node.FetchStatus(ctx, f.dir); err != nil {
				b.Fatal(err)
			}
			if _, err := node.FetchPolicy(ctx, f.dir); err != nil {
				b.Fatal(err)
			}
		}
		perPage(b, start)
	})
	b.Run("browser", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		c := startChromium(b, ctx)
		c.login(s.URL())
		var ms []float64
		for b.Loop() {
			c.do("load the overview", chromedp.Navigate(s.URL()+"/"))
			v, err := chromedp.Run(c.ctx, chromedp.Evaluate[float64](`(() => { const n = performance.getEntriesByType("navigation")[0]; return n.loadEventEnd - n.startTime; })()`))
			if err != nil || v <= 0 {
				b.Fatalf("navigation timing: %v %v", v, err)
			}
			ms = append(ms, v)
		}
		slices.Sort(ms)
		b.ReportMetric(ms[len(ms)/2], "ms/page")
	})
	b.Run("page", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			resp, page := br.do("GET", "/", nil, nil)
			if resp.StatusCode != http.StatusOK || len(page) < 1000 {
				b.Fatalf("overview: %s", resp.Status)
			}
		}
		perPage(b, start)
	})
}
