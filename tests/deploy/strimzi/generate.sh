#!/usr/bin/env bash
# Regenerates the vendored Strimzi CRDs (Kafka, KafkaNodePool, KafkaTopic) beside this script, the way Strimzi
# builds its own install files: Strimzi's crd-generator run over its api model classes, both from Maven Central.
# Needs Maven and Java 21 or newer (JAVA=/path/to/java). Bump STRIMZI_VERSION to follow a new Strimzi release.
set -euo pipefail
STRIMZI_VERSION="${STRIMZI_VERSION:-1.2.0}"
JAVA="${JAVA:-java}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local</groupId><artifactId>strimzi-crds</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>io.strimzi</groupId><artifactId>api</artifactId><version>$STRIMZI_VERSION</version></dependency>
    <dependency><groupId>io.strimzi</groupId><artifactId>crd-generator</artifactId><version>$STRIMZI_VERSION</version></dependency>
    <dependency><groupId>io.strimzi</groupId><artifactId>crd-annotations</artifactId><version>$STRIMZI_VERSION</version></dependency>
  </dependencies>
</project>
POM
(cd "$work" && mvn -q dependency:build-classpath -Dmdep.outputFile=cp.txt)
# The arguments of Strimzi's own api/pom.xml (generate-crd-co-install-v1), for the three kinds labelmesh uses.
"$JAVA" -cp "$(cat "$work/cp.txt")" io.strimzi.crdgenerator.CrdGenerator \
  --label app:strimzi --label strimzi.io/crd-install:true --target-kube 1.16+ \
  --crd-api-version v1 --api-versions v1 --storage-version v1 --yaml \
  io.strimzi.api.kafka.model.kafka.Kafka="$here/040-Crd-kafka.yaml" \
  io.strimzi.api.kafka.model.topic.KafkaTopic="$here/043-Crd-kafkatopic.yaml" \
  io.strimzi.api.kafka.model.nodepool.KafkaNodePool="$here/045-Crd-kafkanodepool.yaml"
echo "$STRIMZI_VERSION" > "$here/VERSION"
