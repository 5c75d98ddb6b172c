"""Reference implementations of Homework 2, used only by the trusted grader.

Student code never sees this package: the sandbox does not mount reference/.
"""
