package yamlx

import (
	"fmt"
	"strings"
)

// InputError is a malformed input file: it names the file, the line and
// the field so a person can fix it.
type InputError struct {
	File  string
	Line  int    // 1-based; 0 when the error is about the whole file
	Field string // the field's path, as "edges[3].capacity"; may be empty
	Err   error
}

func (e *InputError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *InputError) Unwrap() error { return e.Err }

// Errorf builds an InputError from a format.
func Errorf(file string, line int, field, format string, args ...any) *InputError {
	return &InputError{File: file, Line: line, Field: field, Err: fmt.Errorf(format, args...)}
}
