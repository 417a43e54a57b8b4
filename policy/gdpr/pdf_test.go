package gdpr

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The PDFs are read as a person would: rendered by poppler (pdftotext,
// pdftoppm) and the sign's QR code decoded from the rendered page by zbar
// (zbarimg). CI installs Debian's poppler-utils and zbar-tools.

func need(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s is not installed (Debian package %s): the PDF is not checked as rendered", tool, pkg)
	}
}

// writePDF renders d into a temporary file and returns its path.
func writePDF(t *testing.T, d *Doc) string {
	t.Helper()
	var b bytes.Buffer
	if err := d.PDF(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b.Bytes(), []byte("%PDF-")) {
		t.Fatalf("not a PDF: %.20q", b.Bytes())
	}
	path := filepath.Join(t.TempDir(), fmt.Sprintf("%s_%s.pdf", d.Kind, d.Lang))
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var spaces = regexp.MustCompile(`\s+`)

// pdfText is the PDF's text in drawing order, runs of white space (line
// and page breaks included) made one space, and its page count.
func pdfText(t *testing.T, path string) (string, int) {
	t.Helper()
	out, err := exec.Command("pdftotext", "-raw", "-enc", "UTF-8", path, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v\n%s", err, out)
	}
	pages := strings.Count(strings.TrimRight(string(out), "\f"), "\f") + 1
	return spaces.ReplaceAllString(string(out), " "), pages
}

// TestPDFText renders every document in both languages and checks, in the
// text poppler extracts, the fields each must show, Czech diacritics
// intact.
func TestPDFText(t *testing.T) {
	need(t, "pdftotext", "poppler-utils")
	common := map[string][]string{
		"cs": {"KAMEROVÉ ŘEŠENÍ TĚŠÍN s.r.o.", "Vytvořeno z politiky Custos (index 1234) dne 6. 12. 2026 09:30 UTC.", "strana 1 z "},
		"en": {"KAMEROVÉ ŘEŠENÍ TĚŠÍN s.r.o.", "Generated from Custos policy index 1234 on 2026-12-06 09:30 UTC.", "page 1 of "},
	}
	want := map[Kind]map[string][]string{
		KindRoPA: {
			"cs": {"Záznamy o činnostech zpracování", "Na Příkopě 12, 110 00 Praha 1", "Ing. Jiří Růžička", "dpo@kamery.example",
				"praha-1/entrance", "Ochrana majetku a osob před krádeží a násilím u vstupu", "čl. 6 odst. 1 písm. f) GDPR – oprávněný zájem správce",
				"brno/yard", "Ochrana skladu a dvora", "user:dan", "živý obraz", "dc-a", "dc-b", "Nedochází k předání mimo EU/EHP",
				"7 dní (168 hodin)", "Inventura pokladen je jednou týdně; rozdíly se dohledávají až 7 dní zpětně.", "WireGuard", "OpenPGP",
				"zřetězeného hashi", "potřebný počet schválení: 2", "Serverovna je zamčená; klíče má jen správce IT.", "DOPLNÍ PROVOZOVATEL"},
			"en": {"Records of processing activities", "Controller and data protection officer (art. 30(1)(a))", "praha-1/till",
				"Ochrana pokladny; účel: předcházení ztrátám", "user:alice", "playback of recordings (after approval)", "dc-b",
				"No transfer outside the EU/EEA", "7 days (168 hours)", "2 days (48 hours)", "WireGuard", "hash-chained audit journal",
				"TO BE COMPLETED BY THE OPERATOR"},
		},
		KindDPIA: {
			"cs": {"Posouzení vlivu na ochranu osobních údajů (DPIA)", "Kamerový systém provozovny praha-1", "praha-1/entrance", "praha-1/till",
				"install-1", "Posouzení nezbytnosti a přiměřenosti (písm. b))", "delší než výchozích 72 hodin; odůvodnění: Inventura pokladen",
				"v rámci výchozí doby 72 hodin", "Rizika pro práva a svobody subjektů údajů (písm. c))", "Opatření k řešení rizik (písm. d))",
				"DOPLNÍ PROVOZOVATEL:", "praha-1/till: umístění kamery", "Stanovisko pověřence pro ochranu osobních údajů (čl. 35 odst. 2)"},
			"en": {"Data protection impact assessment (DPIA)", "CCTV system of site praha-1", "Assessment of necessity and proportionality (art. 35(7)(b))",
				"Risks to the rights and freedoms of data subjects (art. 35(7)(c))", "TO BE COMPLETED BY THE OPERATOR:",
				"praha-1/entrance: why a less intrusive measure", "Advice of the data protection officer (art. 35(2))"},
		},
		KindNotice: {
			"cs": {"Informace o zpracování osobních údajů kamerovým systémem", "Provozovna praha-1", "Správce (čl. 13 odst. 1 písm. a))",
				"Ing. Jiří Růžička", "Ochrana pokladny; účel: předcházení ztrátám", "Příjemci (písm. e))", "Předání do třetích zemí (písm. f))",
				"Doba uchování (čl. 13 odst. 2 písm. a))", "7 dní (168 hodin)", "na přístup ke svým osobním údajům (čl. 15)", "na výmaz (čl. 17)",
				"námitku", "odvolat", "Úřad pro ochranu osobních údajů, Pplk. Sochora 27, 170 00 Praha 7, www.uoou.cz"},
			"en": {"Information on the processing of personal data by CCTV", "Controller (art. 13(1)(a))", "Data protection officer (art. 13(1)(b))",
				"Recipients (art. 13(1)(e))", "Retention period (art. 13(2)(a))", "to erasure (art. 17)", "to object", "withdraw",
				"Office for Personal Data Protection (Úřad pro ochranu osobních údajů), Pplk. Sochora 27, 170 00 Praha 7, www.uoou.cz"},
		},
		KindSign: {
			"cs": {"PROSTOR JE STŘEŽEN KAMEROVÝM SYSTÉMEM SE ZÁZNAMEM", "THIS AREA IS MONITORED BY A CCTV SYSTEM WITH RECORDING",
				"Ochrana majetku a osob před krádeží a násilím u vstupu; Ochrana pokladny; účel: předcházení ztrátám",
				"entrance: 3 dny (72 hodin); till: 7 dní (168 hodin)", "Ing. Jiří Růžička, dpo@kamery.example, +420 222 333 445",
				"https://kamery.example/gdpr/praha-1?lang=cs"},
			"en": {"THIS AREA IS MONITORED BY A CCTV SYSTEM WITH RECORDING", "PROSTOR JE STŘEŽEN KAMEROVÝM SYSTÉMEM SE ZÁZNAMEM",
				"Footage kept for", "entrance: 3 days (72 hours); till: 7 days (168 hours)", "Data protection officer",
				"https://kamery.example/gdpr/praha-1?lang=en"},
		},
	}
	for _, g := range generators {
		for _, lang := range Languages {
			t.Run(fmt.Sprintf("%s_%s", g.kind, lang), func(t *testing.T) {
				d, err := g.gen(input(lang))
				if err != nil {
					t.Fatal(err)
				}
				text, pages := pdfText(t, writePDF(t, d))
				for _, s := range append(append([]string{}, common[lang]...), want[g.kind][lang]...) {
					if !strings.Contains(text, s) {
						t.Errorf("the PDF's text lacks %q", s)
					}
				}
				if strings.Contains(text, "{nb}") {
					t.Error("the page count alias was not replaced")
				}
				if g.kind == KindSign && pages != 1 {
					t.Errorf("the sign has %d pages, want one A4 page", pages)
				}
				if lang == "cs" {
					for _, r := range "řěščžůŘĚ" {
						if !strings.ContainsRune(text, r) {
							t.Errorf("the PDF's text lacks %q", r)
						}
					}
				}
				if t.Failed() {
					t.Logf("text: %s", text)
				}
			})
		}
	}
}

// TestPDFEscapes: characters that mean something in PDF syntax or HTML are
// printed as written.
func TestPDFEscapes(t *testing.T) {
	need(t, "pdftotext", "poppler-utils")
	for _, g := range generators {
		in := input("cs")
		in.Controller.Name = evil
		d, err := g.gen(in)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := pdfText(t, writePDF(t, d))
		if !strings.Contains(text, evil) {
			t.Errorf("%s: the PDF does not show the controller's name %q as written:\n%s", g.kind, evil, text)
		}
	}
}

// TestSignQR renders the sign's page to an image and decodes its QR code,
// as a phone would: it must give the notice URL exactly.
func TestSignQR(t *testing.T) {
	need(t, "pdftoppm", "poppler-utils")
	need(t, "zbarimg", "zbar-tools")
	for _, lang := range Languages {
		in := input(lang)
		in.NoticeURL = "https://kamery.example/gdpr/praha-1/informace?lang=" + lang + "&v=1234"
		d, err := Sign(in)
		if err != nil {
			t.Fatal(err)
		}
		pdf := writePDF(t, d)
		prefix := filepath.Join(t.TempDir(), "sign")
		if out, err := exec.Command("pdftoppm", "-r", "150", "-png", "-singlefile", pdf, prefix).CombinedOutput(); err != nil {
			t.Fatalf("pdftoppm: %v\n%s", err, out)
		}
		out, err := exec.Command("zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", prefix+".png").Output()
		if err != nil {
			t.Fatalf("zbarimg found no QR code on the rendered sign: %v", err)
		}
		if got := strings.TrimRight(string(out), "\n"); got != in.NoticeURL {
			t.Fatalf("%s: the QR code says %q, want %q", lang, got, in.NoticeURL)
		}
	}
}

// TestPDFLongTable: a table longer than a page continues on the next with
// its heading repeated, and nothing is lost.
func TestPDFLongTable(t *testing.T) {
	need(t, "pdftotext", "poppler-utils")
	in := input("en")
	for i := range 60 {
		name := fmt.Sprintf("cam-%02d", i)
		c := *in.State.Cameras["praha-1/entrance"]
		c.Name = name
		in.State.Cameras["praha-1/"+name] = &c
	}
	d, err := RoPA(in)
	if err != nil {
		t.Fatal(err)
	}
	text, pages := pdfText(t, writePDF(t, d))
	if pages < 3 {
		t.Fatalf("%d pages for 63 cameras", pages)
	}
	for i := range 60 {
		if !strings.Contains(text, fmt.Sprintf("praha-1/cam-%02d", i)) {
			t.Errorf("camera cam-%02d is missing", i)
		}
	}
	// The purposes table's heading is on more than one page.
	if n := strings.Count(text, "Camera Purpose Legal basis"); n < 2 {
		t.Errorf("the purposes table's heading appears %d times", n)
	}
}

// TestSignFitsOnePage: a sign with more text is set in smaller type to stay
// one A4 page, and one that cannot fit is refused, not printed on two.
func TestSignFitsOnePage(t *testing.T) {
	need(t, "pdftotext", "poppler-utils")
	withCameras := func(n, purposeLen int) Input {
		in := input("cs")
		for i := range n {
			c := *in.State.Cameras["praha-1/entrance"]
			c.Name = fmt.Sprintf("cam-%02d", i)
			c.Purpose = fmt.Sprintf("Účel %02d: ", i) + strings.Repeat("ochrana majetku ", purposeLen/16)
			in.State.Cameras["praha-1/"+c.Name] = &c
		}
		return in
	}
	d, err := Sign(withCameras(4, 100))
	if err != nil {
		t.Fatal(err)
	}
	text, pages := pdfText(t, writePDF(t, d))
	if pages != 1 {
		t.Fatalf("a sign of 6 cameras has %d pages", pages)
	}
	for i := range 4 {
		if !strings.Contains(text, fmt.Sprintf("Účel %02d:", i)) {
			t.Errorf("purpose %d is missing", i)
		}
	}

	d, err = Sign(withCameras(20, 200))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = d.PDF(&b)
	if err == nil || !strings.Contains(err.Error(), "does not fit one A4 page") || b.Len() != 0 {
		t.Fatalf("a sign too long for a page: err %v, %d bytes written", err, b.Len())
	}
}
