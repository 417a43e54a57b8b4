package gdpr

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode"

	"codeberg.org/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/sfnt"
)

// The PDF font: the Go fonts (WGL4, so every Czech letter and the Czech
// quotes), embedded as subsets so that the PDF shows and extracts the
// same text on any machine.
const family = "go"

var fonts, fontsErr = func() ([]*sfnt.Font, error) {
	var out []*sfnt.Font
	for _, ttf := range [][]byte{goregular.TTF, gobold.TTF} {
		f, err := sfnt.Parse(ttf)
		if err != nil {
			return nil, fmt.Errorf("the embedded Go font does not parse: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}()

// checkGlyphs refuses text the font cannot draw: a PDF with blank boxes
// where a name should be is a broken document.
func checkGlyphs(what, s string) error {
	if fontsErr != nil {
		return fontsErr
	}
	var buf sfnt.Buffer
	for _, r := range s {
		if unicode.IsSpace(r) {
			continue
		}
		for _, f := range fonts {
			if g, err := f.GlyphIndex(&buf, r); err != nil || g == 0 {
				return fmt.Errorf("%s has %q (U+%04X), which the PDF font cannot show", what, r, r)
			}
		}
	}
	return nil
}

// texts calls fn on every text of d with a name for errors.
func (d *Doc) texts(fn func(what, s string) error) error {
	for _, t := range []string{d.Title, d.Subtitle, d.Stamp} {
		if err := fn("title", t); err != nil {
			return err
		}
	}
	for _, s := range d.Sections {
		if err := fn("heading", s.Heading); err != nil {
			return err
		}
		for _, b := range s.Blocks {
			all := append([]string{b.Text}, b.Head...)
			all = append(all, b.Items...)
			for _, r := range b.Rows {
				all = append(all, r...)
			}
			for _, t := range all {
				if err := fn(fmt.Sprintf("%q", short(t)), t); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func short(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return s
}

// Page geometry, mm.
const (
	margin  = 18.0
	pageW   = 210.0
	pageH   = 297.0
	usableW = pageW - 2*margin
	pad     = 1.2 // inside a table cell, above and below the text
)

type pdfr struct {
	f    *fpdf.Fpdf
	qrs  int // images registered, for unique names
	d    *Doc
	fill string
	size float64 // body font size, pt
}

// lh is the line height in mm at font size pt.
func lh(pt float64) float64 { return pt * 0.4233 * 1.25 }

// PDF writes the document as an A4 PDF with its fonts embedded; every
// page's footer names the policy index, the generation time and the page.
func (d *Doc) PDF(w io.Writer) error {
	if err := d.check(); err != nil {
		return err
	}
	if err := d.texts(checkGlyphs); err != nil {
		return fmt.Errorf("%s: PDF: %w", d.Kind, err)
	}
	var f *fpdf.Fpdf
	if d.Kind == KindSign {
		// A sign is one page: the largest type that fits.
		for _, size := range []float64{13, 12, 11, 10, 9} {
			if f = d.render(size); f.Err() || f.PageNo() == 1 {
				break
			}
		}
		if !f.Err() && f.PageNo() != 1 {
			return fmt.Errorf("sign: its text does not fit one A4 page even in small type: shorten the purposes or the controller's details")
		}
	} else {
		f = d.render(10)
	}
	var buf bytes.Buffer
	if err := f.Output(&buf); err != nil {
		return fmt.Errorf("%s: PDF: %w", d.Kind, err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// render lays d out with body text of size pt.
func (d *Doc) render(size float64) *fpdf.Fpdf {
	wd, _ := wordsFor(d.Lang)
	f := fpdf.New("P", "mm", "A4", "")
	f.SetCatalogSort(true) // fonts and resources in a fixed order: same input, same bytes
	f.SetCreationDate(d.Generated)
	f.SetModificationDate(d.Generated)
	f.SetProducer("Custos", true)
	f.SetCreator("Custos", true)
	f.SetTitle(d.Title+" – "+d.Subtitle, true)
	f.SetLang(d.Lang)
	f.AddUTF8FontFromBytes(family, "", goregular.TTF)
	f.AddUTF8FontFromBytes(family, "B", gobold.TTF)
	f.SetMargins(margin, margin, margin)
	f.SetAutoPageBreak(true, margin+4)
	f.AliasNbPages("{nb}")
	f.SetFooterFunc(func() {
		f.SetY(-margin)
		f.SetFont(family, "", 7.5)
		f.SetTextColor(60, 60, 60)
		f.CellFormat(0, 4, d.Stamp+"  ·  "+fmt.Sprintf(wd.Page, f.PageNo(), "{nb}"), "", 0, "C", false, 0, "")
		f.SetTextColor(0, 0, 0)
	})
	r := &pdfr{f: f, d: d, fill: wd.Fill, size: size}
	f.AddPage()
	if d.Kind != KindSign {
		r.text("B", 17, d.Title, "L")
		r.text("", 12, d.Subtitle, "L")
		r.text("", 8.5, d.Stamp, "L")
		f.Ln(2)
	}
	for _, s := range d.Sections {
		if s.Heading != "" {
			r.heading(s.Heading)
		}
		for _, b := range s.Blocks {
			r.block(b)
		}
	}
	return f
}

func (r *pdfr) text(style string, pt float64, s, align string) {
	r.f.SetFont(family, style, pt)
	r.f.MultiCell(0, lh(pt), s, "", align, false)
}

// room starts a new page unless h mm fit above the bottom margin.
func (r *pdfr) room(h float64) {
	_, _, _, bottom := r.f.GetMargins()
	if r.f.GetY()+h > pageH-bottom {
		r.f.AddPage()
	}
}

func (r *pdfr) heading(s string) {
	r.room(lh(12)*2 + 12) // keep a heading with what follows
	r.f.Ln(3)
	r.text("B", 12, s, "L")
	y := r.f.GetY()
	r.f.SetLineWidth(0.3)
	r.f.Line(margin, y, pageW-margin, y)
	r.f.Ln(2)
}

func (r *pdfr) block(b Block) {
	f, pt := r.f, r.size
	switch b.Kind {
	case Para:
		r.text("", pt, b.Text, "L")
		f.Ln(1.5)
	case Fields:
		label := 50.0
		if r.d.Kind == KindSign {
			label = 55
		}
		for _, row := range b.Rows {
			r.row([]float64{label, usableW - label}, row, []string{"B", ""}, false, nil)
		}
		f.Ln(2)
	case Table:
		ws := r.widths(b)
		head := func() { r.row(ws, b.Head, repeat("B", len(ws)), true, nil) }
		head()
		for _, row := range b.Rows {
			// A row that begins a page repeats the heading above it.
			r.row(ws, row, repeat("", len(ws)), false, head)
		}
		f.Ln(2)
	case List:
		f.SetFont(family, "", pt)
		for _, it := range b.Items {
			r.room(lh(pt) * float64(len(f.SplitText(it, usableW-5))))
			y := f.GetY()
			f.SetXY(margin, y)
			f.CellFormat(5, lh(pt), "•", "", 0, "L", false, 0, "")
			f.SetXY(margin+5, y)
			f.MultiCell(usableW-5, lh(pt), it, "", "L", false)
		}
		f.Ln(1.5)
	case Fill:
		r.fillBox(b.Text)
	case Headline:
		size := 2 * pt
		if b.Level > 1 {
			size = 1.25 * pt
		}
		f.Ln(4)
		r.text("B", size, b.Text, "C")
		f.Ln(4)
	case Pictogram:
		r.pictogram()
	case QR:
		side := 60.0
		r.room(side + 15)
		r.qrs++
		name := fmt.Sprintf("qr%d", r.qrs)
		f.RegisterImageOptionsReader(name, fpdf.ImageOptions{ImageType: "PNG"}, bytes.NewReader(b.Image))
		f.ImageOptions(name, (pageW-side)/2, f.GetY()+2, side, side, false, fpdf.ImageOptions{ImageType: "PNG"}, 0, "")
		f.SetY(f.GetY() + side + 4)
		r.text("", 10, b.Text, "C") // small enough that a URL of a line stays whole
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// rowHeight is the height of a table row of cells in columns ws.
func (r *pdfr) rowHeight(ws []float64, cells, styles []string) float64 {
	n := 1
	for i, c := range cells {
		r.f.SetFont(family, styles[i], r.size)
		n = max(n, len(r.f.SplitText(c, ws[i])))
	}
	return float64(n)*lh(r.size) + 2*pad
}

// row draws one table row, starting a page first when it does not fit
// (and then calling onNewPage, if any, before it). A row taller than a
// page is drawn as paragraphs instead, which may break across pages.
func (r *pdfr) row(ws []float64, cells, styles []string, shade bool, onNewPage func()) {
	f := r.f
	h := r.rowHeight(ws, cells, styles)
	_, top, _, bottom := f.GetMargins()
	if h > pageH-top-bottom-20 {
		for i, c := range cells {
			r.text(styles[i], r.size, c, "L")
		}
		f.Ln(1)
		return
	}
	page := f.PageNo()
	r.room(h)
	if f.PageNo() != page && onNewPage != nil {
		onNewPage()
	}
	x, y := margin, f.GetY()
	auto, bm := f.GetAutoPageBreak()
	f.SetAutoPageBreak(false, bm)
	f.SetLineWidth(0.2)
	if shade {
		f.SetFillColor(230, 230, 230)
	}
	for i, c := range cells {
		style := "D"
		if shade {
			style = "FD"
		}
		f.Rect(x, y, ws[i], h, style)
		f.SetXY(x, y+pad)
		f.SetFont(family, styles[i], r.size)
		f.MultiCell(ws[i], lh(r.size), c, "", "L", false)
		x += ws[i]
	}
	f.SetAutoPageBreak(auto, bm)
	f.SetXY(margin, y+h)
}

// widths shares the usable width between a table's columns: a column
// whose widest text fits its share keeps its natural width, the others
// split what is left.
func (r *pdfr) widths(b Block) []float64 {
	f, n := r.f, len(b.Head)
	cm := f.GetCellMargin()
	natural := make([]float64, n)
	for i := range n {
		f.SetFont(family, "B", r.size)
		natural[i] = f.GetStringWidth(b.Head[i]) + 2*cm + 1
		f.SetFont(family, "", r.size)
		for _, row := range b.Rows {
			natural[i] = max(natural[i], f.GetStringWidth(row[i])+2*cm+1)
		}
	}
	ws := make([]float64, n)
	fixed := make([]bool, n)
	avail, left := usableW, n
	for changed := true; changed && left > 0; {
		changed = false
		share := avail / float64(left)
		for i := range n {
			if !fixed[i] && natural[i] <= share {
				ws[i], fixed[i] = natural[i], true
				avail -= natural[i]
				left--
				changed = true
			}
		}
	}
	if left > 0 {
		var sum float64
		for i := range n {
			if !fixed[i] {
				sum += math.Sqrt(natural[i])
			}
		}
		for i := range n {
			if !fixed[i] {
				ws[i] = avail * math.Sqrt(natural[i]) / sum
			}
		}
		return ws
	}
	// Everything fits: widen every column to the full width.
	total := usableW - avail
	for i := range ws {
		ws[i] *= usableW / total
	}
	return ws
}

// pictogram draws a CCTV camera, 60 × 36 mm, centred: the shapes of the
// HTML sign's SVG, in mm.
func (r *pdfr) pictogram() {
	f := r.f
	x0, y0 := (pageW-60)/2, f.GetY()+2
	pt := func(x, y float64) fpdf.PointType { return fpdf.PointType{X: x0 + x, Y: y0 + y} }
	f.SetFillColor(0, 0, 0)
	f.Polygon([]fpdf.PointType{pt(4, 6), pt(40, 6), pt(46, 10), pt(46, 22), pt(40, 26), pt(4, 26)}, "F")
	f.Polygon([]fpdf.PointType{pt(46, 12), pt(56, 8), pt(56, 24), pt(46, 20)}, "F")
	f.Rect(x0+20, y0+26, 4, 6, "F")
	f.Rect(x0+10, y0+32, 24, 3, "F")
	f.SetFillColor(255, 255, 255)
	f.Circle(x0+12, y0+16, 3, "F")
	f.SetY(y0 + 38)
}

// fillBox draws a dashed box with the "to be completed" marker, what to
// complete, and room to write.
func (r *pdfr) fillBox(what string) {
	f, pt := r.f, r.size
	f.SetFont(family, "B", pt)
	marker := f.SplitText(r.fill+":", usableW-4)
	f.SetFont(family, "", pt)
	lines := f.SplitText(what, usableW-4)
	h := float64(len(marker)+len(lines))*lh(pt) + 14
	r.room(h + 2)
	y := f.GetY() + 1
	f.SetLineWidth(0.35)
	f.SetDashPattern([]float64{1.5, 1}, 0)
	f.Rect(margin, y, usableW, h, "D")
	f.SetDashPattern(nil, 0)
	f.SetXY(margin+2, y+1.5)
	f.SetFont(family, "B", pt)
	f.MultiCell(usableW-4, lh(pt), strings.Join(marker, " "), "", "L", false)
	f.SetX(margin + 2)
	f.SetFont(family, "", pt)
	f.MultiCell(usableW-4, lh(pt), what, "", "L", false)
	f.SetXY(margin, y+h+2)
}
