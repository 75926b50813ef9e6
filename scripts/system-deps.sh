#!/usr/bin/env bash
# Installs the Debian packages that the integration tests drive for real, when they are missing:
# dcmtk (dcmdump, dsrdump, storescu), dicom3tools (dciodvfy), Orthanc with its DICOMweb plugin,
# a Java runtime (METEOR), Redis, PostgreSQL, Chromium (the workspace's browser tests) and DejaVu
# Sans (the report PDF's font). Needs root (CI runs as root); prints what it does.
set -euo pipefail
need=()
command -v dcmdump >/dev/null || need+=(dcmtk)
command -v dciodvfy >/dev/null || need+=(dicom3tools)
command -v Orthanc >/dev/null || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v java >/dev/null || need+=(default-jre-headless)
command -v redis-server >/dev/null || need+=(redis-server)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
