"""s3lander: Airflow operators, hooks, sensors and triggers that land data in S3 the right way.

Pure logic (intervals, key layout, manifests, paginators, file rules) lives in modules that
import neither Airflow nor boto3, so it is testable and importable anywhere.
"""

__version__ = "0.1.0"
