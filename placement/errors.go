package placement

import (
	"errors"
	"fmt"
	"strings"

	"github.com/geocdn/geocdn/internal/yamlx"
)

// ErrInfeasible is wrapped by the error of a problem whose constraints
// cannot all be met (Config.BestEffort turns it into a plan that lists the
// violations).
var ErrInfeasible = errors.New("placement constraints cannot be met")

// InputError is a malformed topology, demand or catalog: it names the file,
// the line and the field so a person can fix it.
type InputError = yamlx.InputError

// Violation is one constraint a best-effort plan does not meet.
type Violation struct {
	// Constraint is "replicas", "capacity" or "fault-domains".
	Constraint string `json:"constraint"`
	// Subject is what violates it: a class, an object or an edge.
	Subject string `json:"subject"`
	// Detail says by how much, for a person.
	Detail string `json:"detail"`
}

func (v Violation) String() string { return v.Constraint + ": " + v.Subject + ": " + v.Detail }

// InfeasibleError lists every constraint that could not be met.
type InfeasibleError struct {
	Violations []Violation
}

func (e *InfeasibleError) Error() string {
	var b strings.Builder
	noun := "violations"
	if len(e.Violations) == 1 {
		noun = "violation"
	}
	fmt.Fprintf(&b, "%v (%d %s; best effort would place anyway):", ErrInfeasible, len(e.Violations), noun)
	for _, v := range e.Violations {
		b.WriteString("\n  ")
		b.WriteString(v.String())
	}
	return b.String()
}

func (e *InfeasibleError) Is(target error) bool { return target == ErrInfeasible }

// source is where a topology, demand or catalog entry was read from, so
// that a problem only the optimiser can see (a region without an anchor,
// more replicas than edges) still names the file and the line. Entries
// built in code have none.
type source struct {
	file string
	line int
}

// known reports whether the entry was read from a file.
func (s source) known() bool { return s.file != "" }

func (s source) String() string { return fmt.Sprintf("%s:%d", s.file, s.line) }

// errorf is an error about the entry: an *InputError naming its file, line
// and field when it was read from a file, else a plain error.
func (s source) errorf(field, format string, args ...any) error {
	if !s.known() {
		return fmt.Errorf(format, args...)
	}
	return yamlx.Errorf(s.file, s.line, field, format, args...)
}
