// Command check validates deployment files with the libraries their real consumers use, offline:
//
//	check crd < manifests.yaml    decode every ServiceMonitor and PrometheusRule strictly into the Prometheus
//	                              Operator's Go types (unknown fields and wrong types are errors)
//	check compose FILE            load a Compose file with compose-go (what `docker compose` uses): schema
//	                              validation, interpolation, merges; prints the resolved project as JSON
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "crd" {
		os.Exit(checkCRDs(os.Stdin))
	}
	if len(os.Args) == 3 && os.Args[1] == "compose" {
		os.Exit(loadCompose(os.Args[2]))
	}
	fmt.Fprintln(os.Stderr, "usage: check crd < manifests.yaml | check compose FILE")
	os.Exit(2)
}

func checkCRDs(in io.Reader) int {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(in))
	checked, failed := 0, 0
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			return 2
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
			return 2
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
		return 1
	}
	return 0
}

func loadCompose(file string) int {
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithOsEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_, _ = os.Stdout.Write(out)
	return 0
}
