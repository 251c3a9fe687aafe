package main

// Request bodies checked against Firecracker's OpenAPI description (swagger 2.0,
// src/firecracker/swagger/firecracker.yaml at 1.17.0-dev): the definitions of the endpoints the
// stand-in serves, with their field names, types, enums, bounds and required fields. Firecracker
// deserialises with serde's deny_unknown_fields, so an unknown field is an error, as here.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

type field struct {
	kind     string // string, bool, integer, object, array-of-string, any-object
	enum     []string
	min, max *int64
	pattern  *regexp.Regexp
	ref      *definition // for kind object
}

type definition struct {
	name     string
	fields   map[string]field
	required []string
}

func i64(v int64) *int64 { return &v }

var tokenBucket = &definition{name: "TokenBucket", fields: map[string]field{
	"one_time_burst": {kind: "integer", min: i64(0)},
	"refill_time":    {kind: "integer", min: i64(0)},
	"size":           {kind: "integer", min: i64(0)},
}, required: []string{"refill_time", "size"}}

var rateLimiter = &definition{name: "RateLimiter", fields: map[string]field{
	"bandwidth": {kind: "object", ref: tokenBucket},
	"ops":       {kind: "object", ref: tokenBucket},
}}

var machineConfiguration = &definition{name: "MachineConfiguration", fields: map[string]field{
	"cpu_template":      {kind: "string", enum: []string{"C3", "T2", "T2S", "T2CL", "T2A", "V1N1", "None"}},
	"smt":               {kind: "bool"},
	"mem_size_mib":      {kind: "integer", min: i64(1)},
	"track_dirty_pages": {kind: "bool"},
	"vcpu_count":        {kind: "integer", min: i64(1), max: i64(32)},
	"huge_pages":        {kind: "string", enum: []string{"None", "Transparent", "2M"}},
}, required: []string{"mem_size_mib", "vcpu_count"}}

var bootSource = &definition{name: "BootSource", fields: map[string]field{
	"boot_args":         {kind: "string"},
	"initrd_path":       {kind: "string"},
	"kernel_image_path": {kind: "string"},
}, required: []string{"kernel_image_path"}}

var driveDef = &definition{name: "Drive", fields: map[string]field{
	"drive_id":       {kind: "string"},
	"partuuid":       {kind: "string"},
	"is_root_device": {kind: "bool"},
	"cache_type":     {kind: "string", enum: []string{"Unsafe", "Writeback"}},
	"is_read_only":   {kind: "bool"},
	"path_on_host":   {kind: "string"},
	"rate_limiter":   {kind: "object", ref: rateLimiter},
	"io_engine":      {kind: "string", enum: []string{"Sync", "Async"}},
	"socket":         {kind: "string"},
}, required: []string{"drive_id", "is_root_device"}}

var networkInterface = &definition{name: "NetworkInterface", fields: map[string]field{
	"guest_mac":       {kind: "string", pattern: regexp.MustCompile(`^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$`)},
	"host_dev_name":   {kind: "string"},
	"iface_id":        {kind: "string"},
	"mtu":             {kind: "integer", min: i64(68), max: i64(65535)},
	"rx_rate_limiter": {kind: "object", ref: rateLimiter},
	"tx_rate_limiter": {kind: "object", ref: rateLimiter},
}, required: []string{"host_dev_name", "iface_id"}}

var mmdsConfig = &definition{name: "MmdsConfig", fields: map[string]field{
	"version":            {kind: "string", enum: []string{"V1", "V2"}},
	"network_interfaces": {kind: "array-of-string"},
	"ipv4_address":       {kind: "string", pattern: regexp.MustCompile(`^169\.254\.([1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-4])\.([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$`)},
	"imds_compat":        {kind: "bool"},
}, required: []string{"network_interfaces"}}

var instanceActionInfo = &definition{name: "InstanceActionInfo", fields: map[string]field{
	"action_type": {kind: "string", enum: []string{"FlushMetrics", "InstanceStart", "SendCtrlAltDel"}},
}, required: []string{"action_type"}}

var loggerDef = &definition{name: "Logger", fields: map[string]field{
	"level":           {kind: "string", enum: []string{"Error", "Warning", "Info", "Debug", "Trace", "Off", "error", "warning", "info", "debug", "trace", "off"}},
	"log_path":        {kind: "string"},
	"show_level":      {kind: "bool"},
	"show_log_origin": {kind: "bool"},
	"module":          {kind: "string"},
}}

// deserializeError is Firecracker's wording for a body serde refused.
func deserializeError(detail string) error {
	return fmt.Errorf("An error occurred when deserializing the json body of a request: %s", detail)
}

func decodeStrict(body []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		return nil, deserializeError(err.Error())
	}
	if obj == nil {
		return nil, deserializeError("invalid type: null, expected struct")
	}
	if dec.More() {
		return nil, deserializeError("trailing characters")
	}
	return obj, nil
}

// validate checks one JSON object against a definition and returns it decoded.
func validate(def *definition, raw json.RawMessage) (map[string]any, error) {
	obj, err := decodeStrict(raw)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	names := make([]string, 0, len(def.fields))
	for n := range def.fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for key, value := range obj {
		f, ok := def.fields[key]
		if !ok {
			return nil, deserializeError(fmt.Sprintf("unknown field `%s`, expected one of `%s`", key, strings.Join(names, "`, `")))
		}
		v, err := checkField(key, f, value)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	for _, r := range def.required {
		if _, ok := obj[r]; !ok {
			return nil, deserializeError(fmt.Sprintf("missing field `%s`", r))
		}
	}
	return out, nil
}

func checkField(key string, f field, raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, deserializeError(err.Error())
	}
	wrongType := func(want string) error {
		return deserializeError(fmt.Sprintf("invalid type: %s, expected %s for `%s`", describe(v), want, key))
	}
	switch f.kind {
	case "string":
		s, ok := v.(string)
		if !ok {
			return nil, wrongType("a string")
		}
		if f.enum != nil && !contains(f.enum, s) {
			return nil, deserializeError(fmt.Sprintf("unknown variant `%s`, expected one of `%s` for `%s`", s, strings.Join(f.enum, "`, `"), key))
		}
		if f.pattern != nil && !f.pattern.MatchString(s) {
			return nil, deserializeError(fmt.Sprintf("invalid value %q for `%s`", s, key))
		}
		return s, nil
	case "bool":
		b, ok := v.(bool)
		if !ok {
			return nil, wrongType("a boolean")
		}
		return b, nil
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return nil, wrongType("an integer")
		}
		i, err := n.Int64()
		if err != nil {
			return nil, wrongType("an integer")
		}
		if (f.min != nil && i < *f.min) || (f.max != nil && i > *f.max) {
			return nil, deserializeError(fmt.Sprintf("invalid value: integer `%d` out of range for `%s`", i, key))
		}
		return i, nil
	case "object":
		if _, ok := v.(map[string]any); !ok {
			return nil, wrongType("struct " + f.ref.name)
		}
		return validate(f.ref, raw)
	case "array-of-string":
		list, ok := v.([]any)
		if !ok {
			return nil, wrongType("a sequence")
		}
		out := make([]string, 0, len(list))
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, deserializeError(fmt.Sprintf("invalid type: %s, expected a string in `%s`", describe(e), key))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("stand-in: unknown field kind %s", f.kind)
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("boolean `%v`", x)
	case json.Number:
		return fmt.Sprintf("number `%s`", x)
	case string:
		return fmt.Sprintf("string %q", x)
	case []any:
		return "sequence"
	default:
		return "map"
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
