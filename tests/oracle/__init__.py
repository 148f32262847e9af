"""Tests of the auth-rules oracle (oracle/): its cases, our side of the verdict, the classifier."""
