"""The service's side of PACS integration: the DIMSE listener, polling, and the Orthanc hook."""
