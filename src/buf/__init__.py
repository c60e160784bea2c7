"""Stubs of protovalidate's rules proto (`buf.validate`), which agentmesh's protos import for their input
rules. `make` generates `buf/validate/` from protos/buf/validate (not committed); this file exists so the
package is found at install time, before the stubs are."""
