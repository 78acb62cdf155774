// Spec reading (YAMLFields, SpecError, SpecFile) lives in its own module so compositions need not
// import the harness's Workload; everything that imports Workload keeps seeing it.
@_exported import SpecFiles
