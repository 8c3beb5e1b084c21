package mcp

import (
	"fmt"
	"math"

	mcplib "github.com/mark3labs/mcp-go/mcp"
)

// args reads a tool call's arguments strictly: a value of the wrong type is
// an error that names the parameter, never silently the default.
type args struct {
	m   map[string]any
	err error
}

func argsOf(req mcplib.CallToolRequest) *args { return &args{m: req.GetArguments()} }

func (a *args) fail(format string, v ...any) {
	if a.err == nil {
		a.err = fmt.Errorf(format, v...)
	}
}

func (a *args) str(name string, required bool) string {
	v, ok := a.m[name]
	if !ok || v == nil {
		if required {
			a.fail("%s is required", name)
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		a.fail("%s must be a string, got %T", name, v)
	}
	return s
}

func (a *args) boolean(name string) bool {
	v, ok := a.m[name]
	if !ok || v == nil {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		a.fail("%s must be true or false, got %v", name, v)
	}
	return b
}

// integer reads a whole, non-negative number no larger than max.
func (a *args) integer(name string, def, max int64) int64 {
	v, ok := a.m[name]
	if !ok || v == nil {
		return def
	}
	f, ok := v.(float64)
	switch {
	case !ok:
		a.fail("%s must be a number, got %v", name, v)
	case f < 0:
		a.fail("%s must not be negative, got %v", name, f)
	case math.IsInf(f, 0) || math.IsNaN(f) || f != math.Trunc(f):
		a.fail("%s must be a whole number, got %v", name, f)
	case f > float64(max):
		a.fail("%s must be at most %d, got %v", name, max, f)
	default:
		return int64(f)
	}
	return def
}

// strs reads an array of strings.
func (a *args) strs(name string) []string {
	v, ok := a.m[name]
	if !ok || v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		a.fail("%s must be an array of strings, got %T", name, v)
		return nil
	}
	var out []string
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			a.fail("%s must be an array of strings, got an element %v", name, e)
			return nil
		}
		out = append(out, s)
	}
	return out
}
