#!/bin/sh
# Runs inside the LocalStack container when it is ready: creates the model bucket.
awslocal s3 mb s3://kindred-models
