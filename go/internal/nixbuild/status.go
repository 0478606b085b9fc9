package nixbuild

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// nix's plain output (the raw log format it uses when its stderr is not a
// terminal) says what it does in lines like these; --print-build-logs adds
// each builder's own lines as "name> text".
var (
	planRE     = regexp.MustCompile(`^these (\d+) derivations? will be built`)
	buildingRE = regexp.MustCompile(`^building '/nix/store/[a-z0-9]{32}-(.+)\.drv'`)
	copyingRE  = regexp.MustCompile(`^copying path '/nix/store/[a-z0-9]{32}-([^']+)' from`)
)

// maxStatusLine bounds a line kept while it is incomplete: a builder may
// print a megabyte without a newline; the status needs its start only.
const maxStatusLine = 4096

// Status turns nix's output into one short line for a progress display:
// what is being built (n of the planned total) or fetched, and the last
// log line. Give NewStatus's writer as Build's progress.
type Status struct {
	set func(string)

	mu       sync.Mutex
	partial  []byte
	total    int
	started  int
	current  string
	lastLine string
}

// NewStatus returns a writer that calls set with the new status after each
// line of nix's output.
func NewStatus(set func(string)) *Status {
	return &Status{set: set}
}

func (s *Status) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range p {
		if c == '\n' || c == '\r' {
			s.line(string(s.partial))
			s.partial = s.partial[:0]
			continue
		}
		if len(s.partial) < maxStatusLine {
			s.partial = append(s.partial, c)
		}
	}
	return len(p), nil
}

func (s *Status) line(l string) {
	l = strings.TrimSpace(l)
	if l == "" {
		return
	}
	if m := planRE.FindStringSubmatch(l); m != nil {
		s.total, _ = strconv.Atoi(m[1])
	} else if m := buildingRE.FindStringSubmatch(l); m != nil {
		s.started++
		s.current = "building " + m[1]
		if s.total > 0 {
			s.current += fmt.Sprintf(" (%d of %d)", s.started, s.total)
		}
	} else if m := copyingRE.FindStringSubmatch(l); m != nil {
		s.current = "fetching " + m[1]
	} else {
		s.lastLine = l // a builder's "name> text", or nix's own words
	}
	s.set(s.status())
}

// status is the status now: "building linux-6.6 (3 of 12) · linux> CC fork.o".
func (s *Status) status() string {
	switch {
	case s.current == "":
		return s.lastLine
	case s.lastLine == "":
		return s.current
	}
	return s.current + " · " + s.lastLine
}
