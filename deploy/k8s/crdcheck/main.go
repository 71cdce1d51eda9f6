// Command crdcheck strictly decodes the Prometheus Operator objects of a rendered manifest stream (stdin)
// into the operator's own Go types: unknown fields and wrong types are errors.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	checked, failed := 0, 0
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(2)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			fmt.Fprintln(os.Stderr, "parse:", err)
			os.Exit(2)
		}
		var target any
		switch {
		case meta.APIVersion == "monitoring.coreos.com/v1" && meta.Kind == "ServiceMonitor":
			target = &monitoringv1.ServiceMonitor{}
		case meta.APIVersion == "monitoring.coreos.com/v1" && meta.Kind == "PrometheusRule":
			target = &monitoringv1.PrometheusRule{}
		default:
			continue
		}
		checked++
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			failed++
			fmt.Printf("FAIL %s/%s: %v\n", meta.Kind, meta.Metadata.Name, err)
		} else {
			fmt.Printf("ok %s/%s\n", meta.Kind, meta.Metadata.Name)
		}
	}
	fmt.Printf("%d checked, %d failed\n", checked, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
