// helm-render renders a Helm chart the way `helm template` does, for CI machines where helm cannot be installed
// (no Go module proxy, no Debian package). Helm's engine is Go's text/template, so this uses text/template too, with
// Helm's objects (.Values, .Release, .Chart, .Files) and exactly the Sprig/Helm functions deploy/helm/ballast uses.
// A function the chart starts using that is missing here is a parse error ("function X not defined"), never a
// silent difference.
//
// Usage: helm-render -chart DIR -values VALUES.json [-name RELEASE] [-namespace NS] [-include-crds] [-notes]
//
// The values file is JSON: the caller merges values.yaml with its overrides (the standard library has no YAML
// parser). Numbers decode as float64, as they do in Helm (which converts YAML values to JSON too).
//
// A failed `required` or `fail` is reported as Helm reports it: "execution error at (TEMPLATE:LINE:COL): MESSAGE".
//
// Limits, by design: toYaml emits JSON (valid YAML, flow style), which parses to the same value as Helm's block
// output only where it is a whole value on its own lines (`key:` then `toYaml . | nindent N`); the chart uses it
// only that way, and appends items to lists with `- {{ toJson . }}`, which is the same in both. Chart.yaml is read
// as flat `key: value` lines. No subcharts, .Capabilities, lookup, tpl, .helmignore or values schema; output is in
// file-name order, not Helm's install order by kind.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

// files is .Files: every chart file outside templates/, by slash-separated path relative to the chart.
type files map[string][]byte

// Get is .Files.Get: the file's content, or "" when there is no such file (as in Helm).
func (f files) Get(name string) string { return string(f[name]) }

func main() {
	chartDir := flag.String("chart", "", "chart directory")
	valuesPath := flag.String("values", "", "values as a JSON object (values.yaml merged with overrides)")
	name := flag.String("name", "release-name", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	includeCRDs := flag.Bool("include-crds", false, "print the files of crds/ first, as helm template --include-crds")
	notes := flag.Bool("notes", false, "print the rendered templates/NOTES.txt instead of the manifests")
	flag.Parse()
	if *chartDir == "" || *valuesPath == "" {
		fmt.Fprintln(os.Stderr, "usage: helm-render -chart DIR -values VALUES.json [-name RELEASE] [-namespace NS] [-include-crds] [-notes]")
		os.Exit(2)
	}
	out, err := render(*chartDir, *valuesPath, *name, *namespace, *includeCRDs, *notes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", cleanError(err))
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

func render(chartDir, valuesPath, name, namespace string, includeCRDs, notes bool) (string, error) {
	chart, err := readChart(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	values := map[string]interface{}{}
	raw, err := os.ReadFile(valuesPath)
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(raw, &values); err != nil {
		return "", fmt.Errorf("values %s: %w", valuesPath, err)
	}
	chartFiles := files{}
	templates := map[string]string{} // "CHART/templates/x.yaml" -> source, the names Helm gives them
	err = filepath.Walk(chartDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, err := filepath.Rel(chartDir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		content, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates[chart["Name"].(string)+"/"+rel] = string(content)
		} else {
			chartFiles[rel] = content
		}
		return nil
	})
	if err != nil {
		return "", err
	}

	// One template set for all files, as in Helm, so a `define` of _helpers.tpl is visible everywhere.
	root := template.New("chart")
	root.Option("missingkey=zero")
	root.Funcs(funcs(root))
	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := root.New(n).Parse(templates[n]); err != nil {
			return "", err
		}
	}

	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": chart,
		"Files": chartFiles,
	}
	var out strings.Builder
	if includeCRDs && !notes {
		crds := []string{}
		for rel := range chartFiles {
			if strings.HasPrefix(rel, "crds/") {
				crds = append(crds, rel)
			}
		}
		sort.Strings(crds)
		for _, rel := range crds {
			fmt.Fprintf(&out, "---\n# Source: %s/%s\n%s\n", chart["Name"], rel, strings.TrimRight(string(chartFiles[rel]), "\n"))
		}
	}
	for _, n := range names {
		base := filepath.Base(n)
		isNotes := base == "NOTES.txt"
		// Partials (_helpers.tpl) only define; NOTES.txt is printed after install, not applied. NOTES.txt is
		// still rendered in manifest mode, so an error in it fails here as it would fail `helm install`.
		if strings.HasPrefix(base, "_") || (notes && !isNotes) {
			continue
		}
		var buf bytes.Buffer
		data := withTemplate(top, n)
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "") // what Helm does with missingkey=zero
		if isNotes {
			if notes {
				out.WriteString(text)
			}
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", n, strings.TrimRight(text, "\n"))
	}
	return out.String(), nil
}

// A failed required or fail, as text/template reports it (the template, the position, the whole action, the
// function), and as Helm shortens it: "execution error at (TEMPLATE:LINE:COL): MESSAGE".
var callError = regexp.MustCompile(`^template: [^:]+:\d+:\d+: executing "[^"]*" at <.*>: error calling (?:required|fail): (.*)$`)
var position = regexp.MustCompile(`^template: ([^:]+:\d+:\d+): `)

func cleanError(err error) string {
	text := err.Error()
	if m := callError.FindStringSubmatch(text); m != nil {
		if p := position.FindStringSubmatch(text); p != nil {
			return fmt.Sprintf("execution error at (%s): %s", p[1], m[1])
		}
	}
	return text
}

// withTemplate adds .Template.Name and .Template.BasePath for one file, as Helm does.
func withTemplate(top map[string]interface{}, name string) map[string]interface{} {
	data := make(map[string]interface{}, len(top)+1)
	for k, v := range top {
		data[k] = v
	}
	data["Template"] = map[string]interface{}{"Name": name, "BasePath": strings.SplitN(name, "/", 2)[0] + "/templates"}
	return data
}

// readChart reads the top-level scalars of Chart.yaml (name, version, appVersion, ...) under Helm's capitalised
// names (.Chart.Name, .Chart.AppVersion). Nested keys (maintainers, dependencies) are skipped.
func readChart(path string) (map[string]interface{}, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	chart := map[string]interface{}{}
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := scanner.Text()
		if line == "" || line[0] == ' ' || line[0] == '-' || line[0] == '#' {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		if i := strings.Index(value, " #"); i >= 0 {
			value = strings.TrimSpace(value[:i])
		}
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		key = strings.TrimSpace(key)
		chart[strings.ToUpper(key[:1])+key[1:]] = value
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	for _, k := range []string{"ApiVersion", "Name", "Version"} {
		if s, _ := chart[k].(string); s == "" {
			return nil, fmt.Errorf("%s: %s is missing", path, strings.ToLower(k[:1])+k[1:])
		}
	}
	return chart, nil
}

// funcs are the Sprig and Helm functions the chart uses, each with Sprig's argument order and behaviour.
func funcs(root *template.Template) template.FuncMap {
	return template.FuncMap{
		// Helm's own.
		"include": func(name string, data interface{}) (string, error) {
			var buf bytes.Buffer
			err := root.ExecuteTemplate(&buf, name, data)
			return buf.String(), err
		},
		"required": func(message string, value interface{}) (interface{}, error) {
			if value == nil {
				return nil, errors.New(message)
			}
			if s, ok := value.(string); ok && s == "" {
				return nil, errors.New(message)
			}
			return value, nil
		},
		"fail":   func(message string) (string, error) { return "", errors.New(message) },
		"toYaml": toJSON, // JSON is YAML; see the package comment for where that equals Helm's output
		"toJson": toJSON,
		// Sprig's.
		"default": func(fallback interface{}, given ...interface{}) interface{} {
			if len(given) == 0 || empty(given[0]) {
				return fallback
			}
			return given[0]
		},
		"quote": func(values ...interface{}) string {
			quoted := []string{}
			for _, v := range values {
				if v != nil {
					quoted = append(quoted, fmt.Sprintf("%q", strval(v)))
				}
			}
			return strings.Join(quoted, " ")
		},
		"nindent": func(spaces int, s string) string { return "\n" + indent(spaces, s) },
		"trunc": func(c int, s string) string {
			if c < 0 && len(s)+c > 0 {
				return s[len(s)+c:]
			}
			if c >= 0 && len(s) > c {
				return s[:c]
			}
			return s
		},
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"contains":   func(substr, s string) bool { return strings.Contains(s, substr) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
	}
}

// indent is Sprig's indent: every line, the first included, gets the padding.
func indent(spaces int, s string) string {
	pad := strings.Repeat(" ", spaces)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// toJSON is Sprig's toJson (and this renderer's toYaml): compact JSON, "" when the value cannot be encoded.
func toJSON(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(data)
}

// empty is Sprig's test behind default: nil, false, 0, and empty strings, lists and maps are empty.
func empty(given interface{}) bool {
	v := reflect.ValueOf(given)
	if !v.IsValid() {
		return true
	}
	switch v.Kind() {
	case reflect.Array, reflect.Chan, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Complex64, reflect.Complex128:
		return v.Complex() == 0
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Ptr:
		return v.IsNil()
	case reflect.Struct:
		return false
	}
	return false
}

// strval is Sprig's conversion of a value to a string (quote uses it).
func strval(v interface{}) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case error:
		return v.Error()
	case fmt.Stringer:
		return v.String()
	default:
		return fmt.Sprintf("%v", v)
	}
}
