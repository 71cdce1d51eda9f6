"""Label Studio as labelmesh's labelling UI: an ML backend (pre-labels in, annotations back as SubmitLabel) and a
sync that creates Label Studio tasks only for what labelmesh routes to people. Everything towards labelmesh goes
over the gateway's gRPC API (labelmesh.client); towards Label Studio over its HTTP API (labelmesh.label_studio.api).
"""
